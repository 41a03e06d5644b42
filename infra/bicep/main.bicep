// babelroom on Azure, provisioned by `azd up` (azure.yaml at the repository root).
//
//   browsers ── WebSocket ──> Web PubSub (hub "rooms") ── event handler (azd postdeploy hook) ──> Function App
//   Function App ──> Durable speaker entity (Storage) ──> queue "segments" ──> translator ──> Azure OpenAI realtime
//   Function App ──> ACS Rooms + Identity (room lifetime, roles, calling tokens)
//
// Every resource is reached with one user-assigned managed identity; no key is put in app
// settings. Subscription scope so that `azd up` creates the resource group too.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('Region for everything except Azure OpenAI (and ACS, which is global).')
param location string

@description('Object id of the developer running azd (set by azd as AZURE_PRINCIPAL_ID); gets data roles for local runs.')
param principalId string = ''

@description('Type of principalId: User for a developer, ServicePrincipal for a CI pipeline.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Region for Azure OpenAI: one where the realtime model has GlobalStandard capacity.')
@allowed([
  'eastus2'
  'swedencentral'
])
param openAiLocation string = 'eastus2'

@description('Realtime model deployed for the translator.')
param realtimeModelName string = 'gpt-realtime'

@description('Version of realtimeModelName.')
param realtimeModelVersion string = '2025-08-28'

@description('Transcription model for what speakers say; deployed under its own name, which REALTIME_TRANSCRIPTION_MODEL carries.')
param transcriptionModelName string = 'gpt-4o-mini-transcribe'

@description('Version of transcriptionModelName.')
param transcriptionModelVersion string = '2025-03-20'

@description('GlobalStandard capacity of the transcription deployment in thousands of tokens per minute.')
@minValue(1)
param transcriptionCapacity int = 50

@description('GlobalStandard capacity of the realtime deployment in thousands of tokens per minute; one speaker translated into one language uses ~5K TPM.')
@minValue(1)
param realtimeCapacity int = 50

@description('Free_F1 ($0, 20 connections) for trials; Standard_S1 for real rooms.')
@allowed([
  'Free_F1'
  'Standard_S1'
])
param webPubSubSku string = 'Free_F1'

@description('Web PubSub units (Standard_S1 only): 1,000 concurrent connections each.')
@minValue(1)
param webPubSubCapacity int = 1

@description('Upper bound of function app instances (cost and Azure OpenAI fan-out guard).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Where ACS keeps data at rest.')
param communicationDataLocation string = 'United States'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var webPubSubHubName = 'rooms'
var realtimeDeploymentName = realtimeModelName
var transcriptionDeploymentName = transcriptionModelName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${take(functionAppName, 32)}'
    roomsContainerName: 'rooms'
    segmentsContainerName: 'segments'
    transcriptsContainerName: 'transcripts'
    segmentQueueName: 'segments'
  }
}

module webPubSub 'modules/webpubsub.bicep' = {
  name: 'webpubsub'
  scope: rg
  params: {
    name: '${abbrs.signalRServiceWebPubSub}${resourceToken}'
    location: location
    tags: tags
    sku: webPubSubSku
    capacity: webPubSubCapacity
    identityId: identity.outputs.id
  }
}

module communication 'modules/communication.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    name: '${abbrs.communicationCommunicationServices}${resourceToken}'
    tags: tags
    dataLocation: communicationDataLocation
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: '${abbrs.cognitiveServicesAccounts}${resourceToken}'
    location: openAiLocation
    tags: tags
    deploymentName: realtimeDeploymentName
    modelName: realtimeModelName
    modelVersion: realtimeModelVersion
    capacity: realtimeCapacity
    transcriptionDeploymentName: transcriptionDeploymentName
    transcriptionModelName: transcriptionModelName
    transcriptionModelVersion: transcriptionModelVersion
    transcriptionCapacity: transcriptionCapacity
  }
}

module roleAssignments 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    storageAccountName: storage.outputs.name
    webPubSubName: webPubSub.outputs.name
    openAiName: openAi.outputs.name
    communicationName: communication.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// ---- app settings ---------------------------------------------------------------------------
// The complete set the function app gets (the appsettings resource replaces, never merges).
// Adjust here, and keep local.settings.sample.json in step: tests/infra/test_bicep.py reads
// these two blocks.

// Read by the Functions host and its extensions (Durable, queues, Web PubSub trigger), not by
// babelroom code directly. Identity-based connections: <prefix>__accountName/__serviceUri +
// __credential=managedidentity + __clientId. FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION must not be set on Flex Consumption (functionAppConfig.runtime).
var hostSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  WebPubSubConnectionString__serviceUri: webPubSub.outputs.endpoint
  WebPubSubConnectionString__credential: 'managedidentity'
  WebPubSubConnectionString__clientId: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
}

// Read by babelroom code (babelroom/config.py, babelroom/adapters/*, local.settings.sample.json).
// Not set in Azure on purpose (tests/infra/test_bicep.py NOT_IN_AZURE): key-auth settings
// (WebPubSubConnectionString, ACS_CONNECTION_STRING, AZURE_OPENAI_API_KEY), the connection-string
// form of AzureWebJobsStorage, the twin/OpenAI-only OPENAI_BASE_URL and OPENAI_API_KEY,
// BABELROOM_TOKEN_KEY (ROOM_SERVICE=local only) and FUNCTIONS_WORKER_RUNTIME (Flex rejects it).
var codeSettings = {
  AZURE_CLIENT_ID: identity.outputs.clientId
  WEBPUBSUB_ENDPOINT: webPubSub.outputs.endpoint
  WEBPUBSUB_HUB: webPubSubHubName
  ROOM_SERVICE: 'acs'
  ACS_ENDPOINT: communication.outputs.endpoint
  TRANSLATOR_PROVIDER: 'azure'
  AZURE_OPENAI_ENDPOINT: openAi.outputs.endpoint
  AZURE_OPENAI_DEPLOYMENT: openAi.outputs.deploymentName
  REALTIME_MODEL: openAi.outputs.deploymentName
  REALTIME_TRANSCRIPTION_MODEL: openAi.outputs.transcriptionDeploymentName
  REALTIME_VOICE: 'alloy'
  ROOMS_CONTAINER: storage.outputs.roomsContainerName
  SEGMENTS_CONTAINER: storage.outputs.segmentsContainerName
  TRANSCRIPTS_CONTAINER: storage.outputs.transcriptsContainerName
  SEGMENT_QUEUE: storage.outputs.segmentQueueName
  AUDIO_CODEC: 'opus'
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    appSettings: union(hostSettings, codeSettings)
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: 2048
    pythonVersion: '3.11'
  }
  // The host stores its keys and Durable state with the identity: roles first.
  dependsOn: [
    roleAssignments
  ]
}

// The hub "rooms" and its event handler are configured after deploy by infra/hooks/postdeploy.sh
// (azure.yaml `postdeploy`): the handler URL needs the function app's webpubsub_extension system
// key, which exists only once the deployed host has started. Not declared here on purpose, so a
// later `azd provision` cannot reset the handler the hook set.

// ---- outputs (azd stores them in .azure/<env>/.env) -------------------------------------------
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
// Not named AZURE_CLIENT_ID: azd loads outputs into the developer's shell, where that name would
// make DefaultAzureCredential try the app's managed identity on a laptop.
output AZURE_APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output WEBPUBSUB_ENDPOINT string = webPubSub.outputs.endpoint
output WEBPUBSUB_HUB string = webPubSubHubName
output WEBPUBSUB_NAME string = webPubSub.outputs.name
output ACS_ENDPOINT string = communication.outputs.endpoint
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.deploymentName
output REALTIME_MODEL string = openAi.outputs.deploymentName
output REALTIME_TRANSCRIPTION_MODEL string = openAi.outputs.transcriptionDeploymentName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
