"""Blob and queue storage: rooms, closed segment audio and the segment queue.

The same azure-storage SDK calls run against Azurite in the twin and against Azure Storage in
production (identity-based when `AzureWebJobsStorage__accountName` is set).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AioBlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from ..config import Settings
from ..rooms import Member, Room
from .credentials import credential

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def connection_string(value: str) -> str:
    return AZURITE if value.strip() == "UseDevelopmentStorage=true" else value


def _settings(s: Settings | Mapping[str, str]) -> Settings:
    """Settings from the composition root; a mapping is still accepted for callers not yet moved."""
    return s if isinstance(s, Settings) else Settings.from_env(s)


def blob_service(settings: Settings | Mapping[str, str], **client_kwargs: Any) -> BlobServiceClient:
    s = _settings(settings)
    if s.storage_account:
        return BlobServiceClient(f"https://{s.storage_account}.blob.core.windows.net", credential=credential(s),
                                 **client_kwargs)
    return BlobServiceClient.from_connection_string(connection_string(s.storage), **client_kwargs)


def aio_blob_service(settings: Settings | Mapping[str, str]) -> AioBlobServiceClient:
    s = _settings(settings)
    if s.storage_account:
        return AioBlobServiceClient(f"https://{s.storage_account}.blob.core.windows.net",
                                    credential=credential(s, aio=True))
    return AioBlobServiceClient.from_connection_string(connection_string(s.storage))


def queue_client(settings: Settings | Mapping[str, str], name: str, **client_kwargs: Any) -> QueueClient:
    """Base64 messages, as the Functions queue trigger expects by default."""
    s = _settings(settings)
    kw: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
        **client_kwargs,
    }
    if s.storage_account:
        url = f"https://{s.storage_account}.queue.core.windows.net"
        return QueueClient(url, name, credential=credential(s), **kw)
    return QueueClient.from_connection_string(connection_string(s.storage), name, **kw)


def init(settings: Settings, **client_kwargs: Any) -> list[str]:
    """Create every container and queue of `settings` (config.py declares them); return what was new.

    Idempotent. In Azure Bicep has created them already; the twin and `func start` against
    Azurite call this (`python -m babelroom storage init`). `client_kwargs` go to the SDK clients
    (the CLI passes a small `retry_total` so a stopped Azurite fails in seconds, not minutes).
    """
    created: list[str] = []
    svc = blob_service(settings, **client_kwargs)
    for c in settings.containers:
        try:
            svc.create_container(c)
            created.append(f"container {c}")
        except ResourceExistsError:
            pass
    for q in settings.queues:
        try:
            queue_client(settings, q, **client_kwargs).create_queue()
            created.append(f"queue {q}")
        except ResourceExistsError:
            pass
    return created


class BlobRoomStore:
    """rooms/{roomId}.json and rooms/{roomId}/members/{memberId}.json."""

    def __init__(self, service: AioBlobServiceClient, container: str = "rooms") -> None:
        self.container = service.get_container_client(container)

    async def _put(self, name: str, doc: dict[str, Any]) -> None:
        await self.container.upload_blob(name, json.dumps(doc).encode(), overwrite=True)

    async def _get(self, name: str) -> dict[str, Any] | None:
        try:
            stream = await self.container.download_blob(name)
            return json.loads(await stream.readall())
        except ResourceNotFoundError:
            return None

    async def save_room(self, room: Room) -> None:
        await self._put(f"{room.room_id}.json", room.to_json())

    async def get_room(self, room_id: str) -> Room | None:
        doc = await self._get(f"{room_id}.json")
        return Room.from_json(doc) if doc else None

    async def save_member(self, member: Member) -> None:
        # The heard language rides along as metadata so roster() is one listing, not a read per member.
        await self.container.upload_blob(f"{member.room_id}/members/{member.member_id}.json",
                                         json.dumps(member.to_json()).encode(), overwrite=True,
                                         metadata={"hear": member.hear})

    async def get_member(self, room_id: str, member_id: str) -> Member | None:
        doc = await self._get(f"{room_id}/members/{member_id}.json")
        return Member.from_json(doc) if doc else None

    async def roster(self, room_id: str) -> dict[str, str]:
        prefix = f"{room_id}/members/"
        out: dict[str, str] = {}
        async for blob in self.container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            member_id = blob.name.removeprefix(prefix).removesuffix(".json")
            hear = (blob.metadata or {}).get("hear")
            if hear is None:  # written before metadata was kept
                doc = await self._get(blob.name)
                hear = (doc or {}).get("hear", "")
            out[member_id] = hear
        return out

    async def delete_member(self, room_id: str, member_id: str) -> None:
        try:
            await self.container.delete_blob(f"{room_id}/members/{member_id}.json")
        except ResourceNotFoundError:
            pass

    # Rooms to end, named by their end time so one listing in name order finds every due room.
    @staticmethod
    def _end_key(room: Room) -> str:
        return f"ends/{int(room.valid_until.timestamp()):012d}.{room.room_id}"

    async def schedule_end(self, room: Room) -> None:
        await self.container.upload_blob(self._end_key(room), b"", overwrite=True)

    async def due_rooms(self, now: datetime) -> list[tuple[str, str]]:
        due = []
        async for blob in self.container.list_blobs(name_starts_with="ends/"):
            stamp, _, room_id = blob.name.removeprefix("ends/").partition(".")
            if int(stamp) > now.timestamp():
                break  # names sort by end time
            due.append((blob.name, room_id))
        return due

    async def ended(self, key: str) -> None:
        try:
            await self.container.delete_blob(key)
        except ResourceNotFoundError:
            pass

    async def ping(self) -> None:
        await self.container.get_container_properties()


class SegmentStore:
    """Closed segment audio as block blobs; block ids are deterministic so retries are idempotent."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self.container = service.get_container_client(container)

    @staticmethod
    def blob_name(speaker: str, turn: str, index: int) -> str:
        return f"{speaker}/{turn}/{index:04d}.pcm"

    def stage(self, name: str, block_id: str, pcm: bytes) -> None:
        self.container.get_blob_client(name).stage_block(block_id, pcm)

    def commit(self, name: str, blocks: list[str], tail: bytes) -> None:
        blob = self.container.get_blob_client(name)
        ids = list(blocks)
        if tail:
            ids.append("tail00")
            blob.stage_block("tail00", tail)
        blob.commit_block_list([BlobBlock(block_id=b) for b in ids])


async def read_segment(service: AioBlobServiceClient, container: str, name: str) -> bytes:
    stream = await service.get_container_client(container).download_blob(name)
    return await stream.readall()
