// One StorageV2 account for everything the app stores: the Functions host and Durable task hub
// (AzureWebJobsStorage), the Flex Consumption deployment package, closed segment audio, transcripts
// and the segment hand-off queue. Shared-key access is disabled: every caller (host, Durable,
// deployment, our code) authenticates with Entra ID, so there is no account key to leak.

param name string
param location string
param tags object = {}

@description('Blob container the Flex Consumption plan deploys the app package from.')
param deploymentContainerName string

@description('Blob container for closed segment audio (SEGMENTS_CONTAINER).')
param segmentsContainerName string = 'segments'

@description('Blob container for transcripts and usage records (TRANSCRIPTS_CONTAINER).')
param transcriptsContainerName string = 'transcripts'

@description('Queue from the speaker entity to the translator function (SEGMENT_QUEUE).')
param segmentQueueName string = 'segments'

@description('Segment audio is only needed until it is translated; delete it after this many days.')
param segmentRetentionDays int = 1

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource segmentsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: segmentsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource transcriptsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: transcriptsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource segmentQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: segmentQueueName
}

// Speech is personal data: raw segment audio is deleted once it can no longer be needed.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-segment-audio'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${segmentsContainer.name}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: segmentRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output deploymentContainerName string = deploymentContainer.name
output segmentsContainerName string = segmentsContainer.name
output transcriptsContainerName string = transcriptsContainer.name
output segmentQueueName string = segmentQueue.name
