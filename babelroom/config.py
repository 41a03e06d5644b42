"""Settings: every name the code reads, in one place, so the config contract test can check them.

Both hosts read the same names: Azure from app settings, the twin from `local.settings.json`-style
environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# name -> what it is (local.settings.sample.json and infra/bicep must set exactly these)
SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage": "storage connection (UseDevelopmentStorage=true for Azurite)",
    "AzureWebJobsStorage__accountName": "storage account for identity-based access (Azure)",
    "WebPubSubConnectionString": "Web PubSub connection string with AccessKey (twin / key auth)",
    "WEBPUBSUB_ENDPOINT": "Web PubSub endpoint for Entra ID auth (Azure)",
    "WEBPUBSUB_HUB": "hub name, 'rooms'",
    "ROOM_SERVICE": "'local' (self-signed identity tokens) or 'acs' (ACS Rooms + Identity)",
    "BABELROOM_TOKEN_KEY": "HS256 key for local identity tokens (ROOM_SERVICE=local only)",
    "AZURE_CLIENT_ID": "client id of the user-assigned managed identity",
    "SEGMENTS_CONTAINER": "blob container for closed segment audio",
    "TRANSCRIPTS_CONTAINER": "blob container for transcripts and usage records",
    "SEGMENT_QUEUE": "storage queue from the speaker entity to the translator",
    "AUDIO_CODEC": "translated audio on the wire: 'opus' (default) or 'pcm16'",
}


@dataclass(frozen=True)
class Settings:
    storage: str
    webpubsub_connection_string: str | None
    webpubsub_endpoint: str | None
    hub: str
    room_service: str
    token_key: str | None
    client_id: str | None
    segments_container: str
    transcripts_container: str
    segment_queue: str
    audio_codec: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        return cls(
            storage=e.get("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            webpubsub_connection_string=e.get("WebPubSubConnectionString") or None,
            webpubsub_endpoint=e.get("WEBPUBSUB_ENDPOINT") or None,
            hub=e.get("WEBPUBSUB_HUB", "rooms"),
            room_service=e.get("ROOM_SERVICE", "local"),
            token_key=e.get("BABELROOM_TOKEN_KEY") or None,
            client_id=e.get("AZURE_CLIENT_ID") or None,
            segments_container=e.get("SEGMENTS_CONTAINER", "segments"),
            transcripts_container=e.get("TRANSCRIPTS_CONTAINER", "transcripts"),
            segment_queue=e.get("SEGMENT_QUEUE", "segments"),
            audio_codec=e.get("AUDIO_CODEC", "opus"),
        )
