"""Recent captions per room, for listeners who missed them (late joiners, a recovery window over 30 s).

One bounded document per room (the last `MAX_ENTRIES` segments, each with its transcript and its
translations), kept by a `HistoryStore` (Blob `transcripts/history/{roomId}.json`, with ETags, in
both the twin and Azure). Translator workers of different speakers append to the same room at
once, so an append is an optimistic read-modify-write: a lost race re-reads and tries again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Protocol

from . import protocol

log = logging.getLogger(__name__)
MAX_ENTRIES = 100
WRITE_ATTEMPTS = 20
RACE_BACKOFF_S = 0.02


class HistoryStore(Protocol):
    """A JSON document per room with a version, written only if the version is unchanged."""

    async def read(self, room_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """The room's entries and their version (None: no document yet)."""
        ...

    async def write(self, room_id: str, entries: list[dict[str, Any]], version: str | None) -> bool:
        """False when someone else wrote since `version` (or created it, when version is None)."""
        ...


class CaptionHistory:
    def __init__(self, store: HistoryStore, max_entries: int = MAX_ENTRIES) -> None:
        self.store = store
        self.max_entries = max_entries

    async def add(self, room_id: str, entry: dict[str, Any]) -> None:
        """Keep one segment's final lines: id, userId, displayName, turn, segment, sourceLanguage,
        original, texts {language: text}. A redelivered segment replaces its earlier entry."""
        entry = entry | {"at": entry.get("at") or time.time()}
        for attempt in range(WRITE_ATTEMPTS):
            entries, version = await self.store.read(room_id)
            kept = [e for e in entries if e.get("id") != entry.get("id")] + [entry]
            kept.sort(key=lambda e: e.get("at", 0))
            if await self.store.write(room_id, kept[-self.max_entries:], version):
                return
            await asyncio.sleep(random.uniform(0, RACE_BACKOFF_S * (attempt + 1)))  # writers spread out
        raise RuntimeError(f"history of room {room_id}: {WRITE_ATTEMPTS} write races in a row")

    async def recent(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The room's last `limit` segments, oldest first."""
        entries, _ = await self.store.read(room_id)
        return entries[-limit:] if limit > 0 else []

    async def message(self, room_id: str, language: str, limit: int = 50) -> dict[str, Any]:
        """The `history` server message for a listener of `language` (the original where a line
        has no translation into it)."""
        lines = []
        for e in await self.recent(room_id, limit):
            text = (e.get("texts") or {}).get(language)
            about = {k: e[k] for k in ("id", "userId", "displayName", "turn", "segment", "sourceLanguage") if k in e}
            lines.append(protocol.caption(
                about, language=language, original=e.get("original", ""), text=text or e.get("original", ""),
                final=True, translated=bool(text) and language != e.get("sourceLanguage")))
        return protocol.history(room_id, language, lines)


    async def send_to(self, broadcaster: Any, connection_id: str, room_id: str, language: str,
                      limit: int = 50) -> bool:
        """Send `history` to one new connection (a late joiner, or a client back after a recovery
        window over 30 s, which reconnects as a new connection). Best effort: a storage error
        never fails the connection; nothing is sent when the room has said nothing yet."""
        try:
            msg = await self.message(room_id, language, limit)
            if not msg["captions"]:
                return False
            await broadcaster.to_connection(connection_id, msg)
            return True
        except Exception as e:
            log.warning("history for %s in room %s not sent: %r", connection_id, room_id, e)
            return False


class MemoryHistoryStore:
    """In-process store with the same versioning rules (unit tests, a single-process twin)."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[list[dict[str, Any]], int]] = {}

    async def read(self, room_id: str) -> tuple[list[dict[str, Any]], str | None]:
        entries, version = self.docs.get(room_id, ([], 0))
        return list(entries), (str(version) if version else None)

    async def write(self, room_id: str, entries: list[dict[str, Any]], version: str | None) -> bool:
        current = self.docs.get(room_id, ([], 0))[1]
        if (str(current) if current else None) != version:
            return False
        self.docs[room_id] = (list(entries), current + 1)
        return True
