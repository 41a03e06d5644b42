// Log Analytics + workspace-based Application Insights. Local (key) auth is off: the app sends
// telemetry with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING + Monitoring
// Metrics Publisher), so the connection string alone cannot be used to write fake telemetry.

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@description('Days of log retention; 30 is the free retention of the pay-as-you-go tier.')
param retentionInDays int = 30

@description('Daily ingestion cap in GB; bounds the bill if a bug logs in a loop.')
param dailyQuotaGb int = 1

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
output logAnalyticsWorkspaceId string = logAnalytics.id
