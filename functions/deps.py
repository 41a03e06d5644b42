"""The composition root: Settings read once per worker process, adapters built from it.

No adapter reads the process environment; both hosts (Azure, the twin) call these same builders.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from babelroom.adapters.local_identity import LocalIdentity
from babelroom.adapters.storage import BlobRoomStore, aio_blob_service
from babelroom.adapters.webpubsub import WebPubSubBroadcaster, service_client
from babelroom.config import Settings
from babelroom.history import CaptionHistory
from babelroom.interpreting import Interpreter
from babelroom.rooms import IdentityProvider, RoomService


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def broadcaster() -> WebPubSubBroadcaster:
    return WebPubSubBroadcaster(service_client(settings()))


@cache
def blob_service() -> Any:
    return aio_blob_service(settings())


@cache
def room_store() -> BlobRoomStore:
    return BlobRoomStore(blob_service(), settings().rooms_container)


def _identity() -> IdentityProvider:
    if settings().room_service == "acs":
        from babelroom.adapters.acs import from_settings

        acs = from_settings(settings().values)
        if acs is None:
            raise RuntimeError("ROOM_SERVICE=acs needs ACS_ENDPOINT or ACS_CONNECTION_STRING")
        return acs  # type: ignore[return-value]
    return LocalIdentity()


@cache
def rooms() -> RoomService:
    return RoomService(room_store(), broadcaster(), _identity(), broadcaster())


class UnavailableTranslator:
    """Stands in when the translator cannot be built, so chat and captions say why, never go silent."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def transcribe(self, pcm16: bytes, source_language: str, prompt: str | None = None) -> Any:
        raise RuntimeError(self.reason)
        yield  # pragma: no cover - makes this an async generator

    async def speak(self, text: str, source_language: str, target_language: str) -> Any:
        raise RuntimeError(self.reason)
        yield  # pragma: no cover - makes this an async generator

    async def translate_text(self, text: str, source_language: str, target_language: str) -> Any:
        raise RuntimeError(self.reason)

    async def health(self) -> tuple[bool, str]:
        return False, self.reason


@cache
def translator() -> Any:
    try:
        from babelroom.adapters.realtime import RealtimeTranslator

        return RealtimeTranslator.from_settings(settings())
    except Exception as e:  # misconfiguration must show in /api/health and in captions
        return UnavailableTranslator(f"translator unavailable: {type(e).__name__}: {e}")


@cache
@cache
def history() -> CaptionHistory:
    """Recent captions per room (transcripts/history/{roomId}.json), for late or returning listeners."""
    from babelroom.adapters.history_blob import BlobHistoryStore

    return CaptionHistory(BlobHistoryStore(blob_service(), settings().transcripts_container))


@cache
def interpreter() -> Interpreter:
    return Interpreter(translator(), broadcaster(), settings().audio_codec, history())
