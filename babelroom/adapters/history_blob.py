"""babelroom.history.HistoryStore on Blob: `history/{roomId}.json` in the transcripts container.

The same SDK calls run against Azurite (twin) and Azure Storage; writes are conditional on the
ETag read (or on the blob not existing yet), so concurrent translator workers never lose a line.
"""

from __future__ import annotations

import json
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError


class BlobHistoryStore:
    def __init__(self, service: Any, container: str) -> None:
        self.container = service.get_container_client(container)

    @staticmethod
    def name(room_id: str) -> str:
        return f"history/{room_id}.json"

    async def read(self, room_id: str) -> tuple[list[dict[str, Any]], str | None]:
        try:
            stream = await self.container.download_blob(self.name(room_id))
            return json.loads(await stream.readall()).get("entries", []), stream.properties.etag
        except ResourceNotFoundError:
            return [], None

    async def write(self, room_id: str, entries: list[dict[str, Any]], version: str | None) -> bool:
        body = json.dumps({"roomId": room_id, "entries": entries}).encode()
        blob = self.container.get_blob_client(self.name(room_id))
        try:
            if version is None:
                await blob.upload_blob(body, overwrite=False)
            else:
                await blob.upload_blob(body, overwrite=True, etag=version,
                                       match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True
