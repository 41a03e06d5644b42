// The "rooms" hub: every client event goes to the Functions Web PubSub extension's webhook. The
// extension authenticates the service by the `code` query parameter, which must be the function
// app's `webpubsub_extension` system key; it is read here with listKeys on the host so no key is
// copied by hand. The system key is created by function-app.bicep (webPubSubSystemKeyName), so
// it exists on the first `azd provision`, before any code is deployed.

param webPubSubName string
param hubName string
param functionAppName string
param functionAppHostName string
param systemKeyName string

resource webPubSub 'Microsoft.SignalRService/webPubSub@2024-03-01' existing = {
  name: webPubSubName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

var extensionKey = listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys[systemKeyName]

resource hub 'Microsoft.SignalRService/webPubSub/hubs@2024-03-01' = {
  parent: webPubSub
  name: hubName
  properties: {
    // Clients never connect anonymously: each URL carries a token minted by POST /api/rooms/{id}/join.
    anonymousConnectPolicy: 'deny'
    eventHandlers: [
      {
        urlTemplate: 'https://${functionAppHostName}/runtime/webhooks/webpubsub?code=${extensionKey}'
        userEventPattern: '*'
        systemEvents: [
          'connect'
          'connected'
          'disconnected'
        ]
      }
    ]
  }
}

output name string = hub.name
