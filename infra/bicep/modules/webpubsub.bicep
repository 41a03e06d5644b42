// Azure Web PubSub: holds the browsers' WebSockets. Local (access key) auth is off: the function
// app calls the data plane with its managed identity (Web PubSub Service Owner), and client access
// tokens are minted by the service (generateToken) instead of being signed with a key.
// The hub and its event handler are set by the azd postdeploy hook (infra/hooks/postdeploy.sh),
// because the handler URL needs the function app's webpubsub_extension system key, which exists
// only once the deployed host has started. The service runs as the app's user-assigned identity,
// so the hook can switch on managed-identity auth on the event handler (docs/deploy.md).

param name string
param location string
param tags object = {}

@description('Free_F1: 20 connections, 20k messages/day, $0. Standard_S1: 1,000 connections per unit.')
@allowed([
  'Free_F1'
  'Standard_S1'
])
param sku string = 'Free_F1'

@description('Resource id of the user-assigned identity the service uses for upstream (event handler) auth.')
param identityId string

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
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
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
