"""Settings and storage: every name the code reads and every container/queue it uses, in one place.

Both hosts read the same names: Azure from app settings, the twin and `func start` from
`local.settings.json`-style environment variables. `Settings` is built once (functions/deps.py,
the twin) and handed to the adapters, so no adapter reads `os.environ` itself.

`Settings.containers` / `Settings.queues` are the storage the code uses. Three places create
storage and all three take these lists: Bicep (tests/infra checks it declares exactly them), the
twin at start and `python -m babelroom storage init` (for `func start` against Azurite).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# name -> what it is. local.settings.sample.json and infra/bicep must set exactly these (or list
# them in tests/infra NOT_IN_AZURE with the reason). Adapters declare the subset they read too.
SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage": "storage connection (UseDevelopmentStorage=true for Azurite)",
    "AzureWebJobsStorage__accountName": "storage account for identity-based access (Azure)",
    "WebPubSubConnectionString": "Web PubSub connection string with AccessKey (twin / key auth)",
    "WEBPUBSUB_ENDPOINT": "Web PubSub endpoint for Entra ID auth (Azure)",
    "WEBPUBSUB_HUB": "hub name, 'rooms'",
    "ROOM_SERVICE": "'local' (self-signed identity tokens) or 'acs' (ACS Rooms + Identity)",
    "BABELROOM_TOKEN_KEY": "HS256 key for local identity tokens (ROOM_SERVICE=local only)",
    "AZURE_CLIENT_ID": "client id of the user-assigned managed identity; unset = DefaultAzureCredential",
    "ACS_ENDPOINT": "ACS endpoint for Entra ID auth (ROOM_SERVICE=acs)",
    "ACS_CONNECTION_STRING": "ACS connection string with an access key (developers only)",
    "ROOMS_CONTAINER": "blob container for room and member documents",
    "SEGMENTS_CONTAINER": "blob container for closed segment audio",
    "TRANSCRIPTS_CONTAINER": "blob container for transcripts and usage records",
    "SEGMENT_QUEUE": "storage queue from the speaker entity to the translator (+ '-poison')",
    "AUDIO_CODEC": "translated audio on the wire: 'opus' (default) or 'pcm16'",
    "TRANSLATOR_PROVIDER": "'local' (twin engine), 'openai' or 'azure'",
    "REALTIME_MODEL": "realtime model (OpenAI / local engine); Azure: the deployment when none is set",
    "REALTIME_TRANSCRIPTION_MODEL": "input transcription model; on Azure the name of a deployment",
    "REALTIME_VOICE": "output voice for GPT realtime (the local engine picks its own)",
    "OPENAI_BASE_URL": "base URL: the local engine (http://127.0.0.1:7073/v1) or OpenAI",
    "OPENAI_API_KEY": "OpenAI key (provider openai; ignored by the local engine)",
    "AZURE_OPENAI_ENDPOINT": "https://<resource>.openai.azure.com (provider azure; GA v1 API)",
    "AZURE_OPENAI_DEPLOYMENT": "deployment of the realtime model (gpt-realtime)",
    "AZURE_OPENAI_API_KEY": "key; unset = Entra ID bearer token",
}

POISON_SUFFIX = "-poison"
"""The Functions queue extension moves a message to `<queue>-poison` after maxDequeueCount tries."""

@dataclass(frozen=True)
class Settings:
    """Typed app settings; `values` keeps the declared names for adapters that take a mapping."""

    storage: str = "UseDevelopmentStorage=true"
    storage_account: str | None = None
    webpubsub_connection_string: str | None = None
    webpubsub_endpoint: str | None = None
    hub: str = "rooms"
    room_service: str = "local"
    token_key: str | None = None
    client_id: str | None = None
    rooms_container: str = "rooms"
    segments_container: str = "segments"
    transcripts_container: str = "transcripts"
    segment_queue: str = "segments"
    audio_codec: str = "opus"
    values: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read once at the composition root (os.environ by default); only declared names are kept."""
        e = os.environ if env is None else env
        return cls(
            storage=e.get("AzureWebJobsStorage") or "UseDevelopmentStorage=true",
            storage_account=e.get("AzureWebJobsStorage__accountName") or None,
            webpubsub_connection_string=e.get("WebPubSubConnectionString") or None,
            webpubsub_endpoint=e.get("WEBPUBSUB_ENDPOINT") or None,
            hub=e.get("WEBPUBSUB_HUB") or "rooms",
            room_service=e.get("ROOM_SERVICE") or "local",
            token_key=e.get("BABELROOM_TOKEN_KEY") or None,
            client_id=e.get("AZURE_CLIENT_ID") or None,
            rooms_container=e.get("ROOMS_CONTAINER") or "rooms",
            segments_container=e.get("SEGMENTS_CONTAINER") or "segments",
            transcripts_container=e.get("TRANSCRIPTS_CONTAINER") or "transcripts",
            segment_queue=e.get("SEGMENT_QUEUE") or "segments",
            audio_codec=e.get("AUDIO_CODEC") or "opus",
            values={k: e[k] for k in SETTINGS if k in e},
        )

    @property
    def containers(self) -> tuple[str, ...]:
        """Every blob container the code reads or writes."""
        return (self.rooms_container, self.segments_container, self.transcripts_container)

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue: the segment queue and its poison queue (consumed, issue 11)."""
        return (self.segment_queue, self.segment_queue + POISON_SUFFIX)
