// Least-privilege data-plane roles, each scoped to the single resource it is for (never the
// resource group). The app's identity gets what the code and the Functions host need; the
// deploying developer (principalId, optional) gets the same data access for running `func start`
// against the cloud resources.
//
// Built-in role definition ids (documented in Azure's built-in roles list):
//   b7e6dc6d-f1e8-4753-8033-0f276bb0955b  Storage Blob Data Owner          host keys/leases, Durable blobs, deployment package, segments
//   974c5e8b-45b9-4653-ba55-5f855dd0fb88  Storage Queue Data Contributor   Durable control/work-item queues, segment queue
//   0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3  Storage Table Data Contributor   Durable history and instance tables
//   12cf5a90-567b-43ae-8102-96cf46c7d9b4  Web PubSub Service Owner         send to groups, add to groups, generateToken
//   5e0bd9bd-7b93-4f28-af87-19fc36ad61bd  Cognitive Services OpenAI User   realtime inference only (no deployment changes)
//   3913510d-42f4-4e42-8a64-420c390055eb  Monitoring Metrics Publisher     Entra-authenticated telemetry to App Insights
//   09976791-48a7-449e-bb21-39d1a415f350  Communication and Email Service Owner
//        the only built-in role that authorizes Entra ID calls to the ACS Identity and Rooms data
//        planes (they check Microsoft.Communication/CommunicationServices/* actions). Scoped to the
//        one ACS resource it is still narrower than a key, which would also be all-powerful there
//        and would have to be stored as a secret.

param appPrincipalId string

@description('Object id of the developer running azd (AZURE_PRINCIPAL_ID); empty to skip.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param userPrincipalType string = 'User'

param storageAccountName string
param webPubSubName string
param openAiName string
param communicationName string
param applicationInsightsName string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  webPubSubServiceOwner: '12cf5a90-567b-43ae-8102-96cf46c7d9b4'
  cognitiveServicesOpenAIUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  communicationServiceOwner: '09976791-48a7-449e-bb21-39d1a415f350'
}

var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

var withUser = !empty(userPrincipalId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource webPubSub 'Microsoft.SignalRService/webPubSub@2024-03-01' existing = {
  name: webPubSubName
}

resource openAi 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: openAiName
}

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ---- the function app's identity ---------------------------------------------------------

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoles: {
    name: guid(storage.id, appPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appWebPubSub 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webPubSub.id, appPrincipalId, roles.webPubSubServiceOwner)
  scope: webPubSub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.webPubSubServiceOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appOpenAi 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(openAi.id, appPrincipalId, roles.cognitiveServicesOpenAIUser)
  scope: openAi
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAIUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appCommunication 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communication.id, appPrincipalId, roles.communicationServiceOwner)
  scope: communication
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationServiceOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the developer (optional) -----------------------------------------------------------

resource userStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoles: if (withUser) {
    name: guid(storage.id, userPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: userPrincipalId
      principalType: userPrincipalType
    }
  }
]

resource userWebPubSub 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(webPubSub.id, userPrincipalId, roles.webPubSubServiceOwner)
  scope: webPubSub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.webPubSubServiceOwner)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userOpenAi 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(openAi.id, userPrincipalId, roles.cognitiveServicesOpenAIUser)
  scope: openAi
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAIUser)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userCommunication 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(communication.id, userPrincipalId, roles.communicationServiceOwner)
  scope: communication
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationServiceOwner)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output appRoleDefinitionIds array = union(storageRoles, [
  roles.webPubSubServiceOwner
  roles.cognitiveServicesOpenAIUser
  roles.communicationServiceOwner
  roles.monitoringMetricsPublisher
])
