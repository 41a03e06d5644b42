// Azure Communication Services: ACS Rooms (room lifetime + roles) and ACS Identity (user tokens).
// The app reaches it with Entra ID (ACS_ENDPOINT + managed identity), so no access key is placed
// in app settings; the keys still exist on the resource for a developer's ACS_CONNECTION_STRING.

param name string
param tags object = {}

@description('Where ACS stores data at rest (a geography, not a region).')
param dataLocation string = 'United States'

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

output name string = communication.name
output id string = communication.id
output endpoint string = 'https://${communication.properties.hostName}'
