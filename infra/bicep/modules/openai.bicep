// Azure OpenAI with the two deployments the translator names: the realtime (speech-to-speech) model
// it connects to (AZURE_OPENAI_DEPLOYMENT) and the transcription model its sessions use for the
// speaker's words (REALTIME_TRANSCRIPTION_MODEL). On Azure a session's transcription `model` must
// be a deployment of the same resource. Key auth is off: the app uses its managed identity
// (Cognitive Services OpenAI User).

param name string
param location string
param tags object = {}

@description('Deployment name the translator connects to (AZURE_OPENAI_DEPLOYMENT).')
param deploymentName string

@description('Realtime model name, e.g. gpt-realtime (GA) or gpt-4o-realtime-preview.')
param modelName string

@description('Model version, e.g. 2025-08-28 for gpt-realtime.')
param modelVersion string

@description('GlobalStandard capacity in thousands of tokens per minute.')
@minValue(1)
param capacity int

@description('Deployment name of the transcription model (REALTIME_TRANSCRIPTION_MODEL).')
param transcriptionDeploymentName string

@description('Transcription model name, e.g. gpt-4o-mini-transcribe.')
param transcriptionModelName string

@description('Transcription model version, e.g. 2025-03-20.')
param transcriptionModelVersion string

@description('GlobalStandard capacity of the transcription deployment, thousands of tokens per minute.')
@minValue(1)
param transcriptionCapacity int

resource openAi 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: true
  }
}

resource realtime 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: openAi
  name: deploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    // A pinned version: a silent model upgrade changes voices, latency and prices.
    versionUpgradeOption: 'NoAutoUpgrade'
  }
}

// Deployments of one account are created one after the other (concurrent ones fail).
resource transcription 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: openAi
  name: transcriptionDeploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: transcriptionCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: transcriptionModelName
      version: transcriptionModelVersion
    }
    versionUpgradeOption: 'NoAutoUpgrade'
  }
  dependsOn: [
    realtime
  ]
}

output name string = openAi.name
output id string = openAi.id
output endpoint string = openAi.properties.endpoint
output deploymentName string = realtime.name
output transcriptionDeploymentName string = transcription.name
