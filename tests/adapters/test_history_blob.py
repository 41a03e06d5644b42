"""Caption history on real Blob storage (Azurite): concurrent appends from several translator
workers all land (ETag-conditional writes), the bound holds, a new room starts empty."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from azure.storage.blob.aio import BlobServiceClient

from babelroom.adapters.history_blob import BlobHistoryStore
from babelroom.history import CaptionHistory


async def test_concurrent_appends_all_land_and_the_bound_holds(azurite: Any) -> None:
    container = f"tr{uuid.uuid4().hex[:10]}"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.create_container(container)
        store = BlobHistoryStore(service, container)
        assert await store.read("r1") == ([], None)
        history = CaptionHistory(store, max_entries=30)
        # four workers (one per speaker) append at once, as queue-triggered translators do
        await asyncio.gather(*(history.add("r1", {"id": f"u{w}:t:{i}", "at": 1000 + i * 4 + w,
                                                  "original": f"{w}/{i}", "texts": {}})
                               for w in range(4) for i in range(5)))
        ids = [e["id"] for e in await history.recent("r1", 100)]
        assert sorted(ids) == sorted(f"u{w}:t:{i}" for w in range(4) for i in range(5))
        assert ids == [f"u{w}:t:{i}" for i in range(5) for w in range(4)]  # oldest first
        for i in range(20):
            await history.add("r1", {"id": f"late:{i}", "at": 2000 + i})
        recent = await history.recent("r1", 100)
        assert len(recent) == 30 and recent[-1]["id"] == "late:19"
        assert not await store.write("r1", [], None)  # creating over an existing document is refused
        assert await history.recent("r2", 5) == []
