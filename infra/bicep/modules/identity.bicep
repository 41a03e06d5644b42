// The one identity the function app runs as. User-assigned (not system-assigned) so that role
// assignments exist before the app does and AZURE_CLIENT_ID is known at provision time.

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
