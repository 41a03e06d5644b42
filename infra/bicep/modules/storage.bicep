// One StorageV2 account for everything the app stores: the Functions host and Durable task hub
// (AzureWebJobsStorage), the Flex Consumption deployment package, and every container and queue
// babelroom code uses: exactly Settings.containers / Settings.queues in babelroom/config.py
// (tests/infra/test_storage_contract.py checks it). The Durable extension creates its own task
// hub queues, tables and containers at start. Shared-key access is disabled: every caller (host, Durable,
// deployment, our code) authenticates with Entra ID, so there is no account key to leak.

param name string
param location string
param tags object = {}

@description('Blob container the Flex Consumption plan deploys the app package from.')
param deploymentContainerName string

@description('Blob container for room and member documents (ROOMS_CONTAINER).')
param roomsContainerName string = 'rooms'

@description('Blob container for closed segment audio (SEGMENTS_CONTAINER).')
param segmentsContainerName string = 'segments'

@description('Blob container for transcripts and usage records (TRANSCRIPTS_CONTAINER).')
param transcriptsContainerName string = 'transcripts'

@description('Queue from the speaker entity to the translator function (SEGMENT_QUEUE).')
param segmentQueueName string = 'segments'

@description('Segment audio is only needed until it is translated; delete it after this many days.')
@minValue(1)
param segmentRetentionDays int = 1

@description('Transcripts and usage records (personal data) are deleted after this many days.')
@minValue(1)
param transcriptRetentionDays int = 30

@description('Room and member documents (display names) are deleted this many days after their last write; a room lives at most 24 h.')
@minValue(1)
param roomRetentionDays int = 7

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

resource roomsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: roomsContainerName
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

// Where the queue extension moves a segment after host.json maxDequeueCount failed attempts; a
// function consumes it so each poisoned segment becomes a notice (issue 11).
resource segmentPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${segmentQueueName}-poison'
}

// One lifecycle rule per container that holds personal data: name, container, days.
var expiry = [
  {
    name: 'expire-segment-audio'
    container: segmentsContainer.name
    days: segmentRetentionDays
  }
  {
    name: 'expire-transcripts'
    container: transcriptsContainer.name
    days: transcriptRetentionDays
  }
  {
    name: 'expire-rooms'
    container: roomsContainer.name
    days: roomRetentionDays
  }
]

// Speech, transcripts and names are personal data: nothing babelroom stores lives forever.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [for rule in expiry: {
        name: rule.name
        enabled: true
        type: 'Lifecycle'
        definition: {
          filters: {
            blobTypes: [
              'blockBlob'
            ]
            prefixMatch: [
              '${rule.container}/'
            ]
          }
          actions: {
            baseBlob: {
              delete: {
                daysAfterModificationGreaterThan: rule.days
              }
            }
          }
        }
      }]
    }
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output deploymentContainerName string = deploymentContainer.name
output roomsContainerName string = roomsContainer.name
output segmentsContainerName string = segmentsContainer.name
output transcriptsContainerName string = transcriptsContainer.name
output segmentQueueName string = segmentQueue.name
output segmentPoisonQueueName string = segmentPoisonQueue.name
