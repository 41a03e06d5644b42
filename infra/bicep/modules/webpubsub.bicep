// Azure Web PubSub: holds the browsers' WebSockets. Local (access key) auth is off: the function
// app calls the data plane with its managed identity (Web PubSub Service Owner), and client access
// tokens are minted by the service (generateToken) instead of being signed with a key.
// The hub and its event handler live in webpubsub-hub.bicep because they need the function app's
// webpubsub_extension system key, which exists only once the function app does.

param name string
param location string
param tags object = {}

@description('Free_F1: 20 connections, 20k messages/day, $0. Standard_S1: 1,000 connections per unit.')
@allowed([
  'Free_F1'
  'Standard_S1'
])
param sku string = 'Free_F1'

@description('Units (Standard_S1 only; Free_F1 is always 1).')
@minValue(1)
param capacity int = 1

resource webPubSub 'Microsoft.SignalRService/webPubSub@2024-03-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku == 'Free_F1' ? 'Free' : 'Standard'
    capacity: sku == 'Free_F1' ? 1 : capacity
  }
  properties: {
    disableLocalAuth: true
    disableAadAuth: false
    publicNetworkAccess: 'Enabled'
    tls: {
      clientCertEnabled: false
    }
  }
}

output name string = webPubSub.name
output id string = webPubSub.id
output endpoint string = 'https://${webPubSub.properties.hostName}'
