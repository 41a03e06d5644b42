#!/usr/bin/env bash
# azd postdeploy hook (azure.yaml): point the Web PubSub hub's event handler at the function app.
#
# Why after deploy, not in Bicep: the handler URL carries the function app's `webpubsub_extension`
# system key, which the Functions Web PubSub extension creates when the host first starts with the
# code deployed. Reading it during `azd provision` (listKeys on a new, empty app) is known to fail.
# Idempotent: every run reads the current key and creates or updates the hub to the same state, so
# `azd deploy` / `azd up` can run any number of times; re-provisioning does not touch the hub
# (Bicep does not declare it, so it cannot reset the handler).
#
# Inputs (azd exports its environment, i.e. the Bicep outputs, to hooks):
#   AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, SERVICE_API_URI, WEBPUBSUB_NAME, WEBPUBSUB_HUB
# Optional:
#   WEBPUBSUB_EVENT_HANDLER_AUDIENCE  Application ID URI (or client id) of an Entra app registration:
#       the service then also sends `Authorization: Bearer <token for that audience>` obtained with
#       its managed identity (auth-type=ManagedIdentity). Validate it with App Service
#       Authentication on the function app (docs/deploy.md, "Authenticating Web PubSub").
#   KEY_WAIT_SECONDS  how long to wait for the extension to create its key (default 300)
set -euo pipefail

: "${AZURE_RESOURCE_GROUP:?run through azd (azd deploy / azd up) or export AZURE_RESOURCE_GROUP}"
: "${AZURE_FUNCTION_APP_NAME:?missing AZURE_FUNCTION_APP_NAME (a Bicep output)}"
: "${SERVICE_API_URI:?missing SERVICE_API_URI (a Bicep output)}"
: "${WEBPUBSUB_NAME:?missing WEBPUBSUB_NAME (a Bicep output)}"
hub="${WEBPUBSUB_HUB:-rooms}"
key_name="webpubsub_extension"
wait_seconds="${KEY_WAIT_SECONDS:-300}"
rg="$AZURE_RESOURCE_GROUP"
app="$AZURE_FUNCTION_APP_NAME"
host="${SERVICE_API_URI%/}"

log() { printf '[postdeploy] %s\n' "$*" >&2; }

# The az webpubsub commands live in a CLI extension; installing it again is a no-op.
az extension add --name webpubsub --upgrade --yes --only-show-errors >/dev/null

read_key() {
  az functionapp keys list --resource-group "$rg" --name "$app" \
    --query "systemKeys.${key_name}" --output tsv 2>/dev/null || true
}

# The extension creates its system key when the freshly deployed host starts; wait for it.
key="$(read_key)"
waited=0
while [ -z "$key" ] && [ "$waited" -lt "$wait_seconds" ]; do
  log "waiting for the ${key_name} system key of ${app} (${waited}s)"
  sleep 10
  waited=$((waited + 10))
  key="$(read_key)"
done
if [ -z "$key" ]; then
  # Still none (the host has not started): create it. The extension uses an existing key as is.
  log "creating the ${key_name} system key"
  key="$(az functionapp keys set --resource-group "$rg" --name "$app" --key-type systemKey \
    --key-name "$key_name" --query value --output tsv)"
fi
[ -n "$key" ] || { log "no ${key_name} key for ${app}"; exit 1; }

handler=(
  "url-template=${host}/runtime/webhooks/webpubsub?code=${key}"
  "user-event-pattern=*"
  "system-event=connect"
  "system-event=connected"
  "system-event=disconnected"
)
if [ -n "${WEBPUBSUB_EVENT_HANDLER_AUDIENCE:-}" ]; then
  handler+=("auth-type=ManagedIdentity" "auth-resource=${WEBPUBSUB_EVENT_HANDLER_AUDIENCE}")
fi

if az webpubsub hub show --resource-group "$rg" --name "$WEBPUBSUB_NAME" --hub-name "$hub" \
  --output none 2>/dev/null; then
  verb=update
else
  verb=create
fi
# Clients never connect anonymously: each URL carries a token minted by POST /api/rooms/{id}/join.
az webpubsub hub "$verb" --resource-group "$rg" --name "$WEBPUBSUB_NAME" --hub-name "$hub" \
  --allow-anonymous false --event-handler "${handler[@]}" --output none
log "hub ${hub}: event handler -> ${host}/runtime/webhooks/webpubsub (${verb}d)"
