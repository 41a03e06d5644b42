"""Fakes for function-level tests: the durable client, the broadcasters, the room store, the
segment store and queue, and the interpreter. Each records what it was asked, so a test checks
what a handler *did*; the entity functions themselves run for real, through the batch JSON the
Durable extension passes (see babelroom/twin/entities.py, which builds the same JSON).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import durable.room
import durable.speaker
from babelroom.rooms import Member, Room, RoomService

# What the worker calls: the SDK's Entity.create handle around each entity function. (Not via
# function_app.app.get_functions(): a second call on one app raises on duplicate names.)
ENTITY_FUNCTIONS = {"room": durable.room.room._function.get_user_function(),
                    "speaker": durable.speaker.speaker._function.get_user_function()}


@dataclass
class StateResponse:
    """What `read_entity_state` answers (azure.durable_functions EntityStateResponse's fields)."""

    entity_exists: bool
    entity_state: Any = None


@dataclass
class EntityRecord:
    exists: bool = False
    state: str | None = None  # JSON text, as the extension stores it
    results: list[dict[str, Any]] = field(default_factory=list)


def signal_body(operation_input: Any) -> str | None:
    """The body the durable client POSTs (json.dumps, then aiohttp's json=): the extension keeps
    it as the operation's input, and the entity SDK's get_input() undoes both layers."""
    return json.dumps(json.dumps(operation_input)) if operation_input else None


def run_batch(name: str, key: str, record: EntityRecord, ops: list[tuple[str, Any]]) -> dict[str, Any]:
    """Runs one batch through the registered entity function, in the extension's JSON."""
    batch = [{"name": op, "input": signal_body(inp), "signal": True} for op, inp in ops]
    context = json.dumps({"self": {"name": name, "key": key}, "exists": record.exists, "state": record.state,
                          "batch": batch})
    out = json.loads(ENTITY_FUNCTIONS[name](context))
    record.exists = bool(out.get("entityExists"))
    record.state = out.get("entityState") if record.exists else None
    record.results += out.get("results", [])
    return out


class FakeDurableClient:
    """Records signals; `run()` delivers them to the real entity functions, one batch per entity."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str, str, Any]] = []  # (entity, key, operation, input)
        self.pending: list[tuple[str, str, str, Any]] = []
        self.entities: dict[tuple[str, str], EntityRecord] = {}
        self.reads: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    async def signal_entity(self, entityId: Any, operation_name: str, operation_input: Any = None,  # noqa: N803
                            task_hub_name: str | None = None, connection_name: str | None = None) -> None:
        if self.fail:
            raise self.fail
        json.dumps(operation_input)  # the SDK sends it as JSON: anything else fails there
        sig = (entityId.name, entityId.key, operation_name, operation_input)
        self.signals.append(sig)
        self.pending.append(sig)

    async def read_entity_state(self, entityId: Any, task_hub_name: str | None = None,  # noqa: N803
                                connection_name: str | None = None) -> StateResponse:
        self.reads.append((entityId.name, entityId.key))
        rec = self.entities.get((entityId.name, entityId.key))
        if rec is None or not rec.exists or rec.state is None:
            return StateResponse(False)
        return StateResponse(True, json.loads(rec.state))

    def run(self) -> None:
        """Deliver every pending signal, in order, batched per entity as the extension does."""
        pending, self.pending = self.pending, []
        by_entity: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        for name, key, op, inp in pending:
            by_entity.setdefault((name, key), []).append((op, inp))
        for (name, key), ops in by_entity.items():
            run_batch(name, key, self.entities.setdefault((name, key), EntityRecord()), ops)

    def state(self, name: str, key: str) -> Any:
        rec = self.entities.get((name, key))
        return json.loads(rec.state) if rec and rec.state else None

    def of(self, operation: str) -> list[Any]:
        return [inp for _, _, op, inp in self.signals if op == operation]


class FakeBroadcaster:
    """The async broadcaster port (functions/events.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []  # ("group"|"connection", target, message)

    async def to_group(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append(("group", group, message))

    async def to_connection(self, connection_id: str, message: dict[str, Any]) -> None:
        self.sent.append(("connection", connection_id, message))

    async def client_url(self, user_id: str, minutes: int) -> str:
        return f"ws://fake/client/hubs/rooms?user={user_id}"

    def of(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [s for s in self.sent if s[2].get("type") == kind]


class FakeServiceClient:
    """The blocking Web PubSub service client the room entity uses."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.closed: list[tuple[str, str | None]] = []

    def send_to_group(self, group: str, message: dict[str, Any], *, content_type: str | None = None) -> None:
        assert content_type == "application/json"
        self.sent.append(("group", group, message))

    def send_to_connection(self, connection_id: str, message: dict[str, Any], *,
                           content_type: str | None = None) -> None:
        assert content_type == "application/json"
        self.sent.append(("connection", connection_id, message))

    def close_connection(self, connection_id: str, *, reason: str | None = None) -> None:
        self.closed.append((connection_id, reason))

    def of(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [s for s in self.sent if s[2].get("type") == kind]


class FakeRoomStore:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.fail: Exception | None = None

    async def save_room(self, room: Room) -> None:
        self.rooms[room.room_id] = room

    async def get_room(self, room_id: str) -> Room | None:
        if self.fail:
            raise self.fail
        return self.rooms.get(room_id)

    async def save_member(self, member: Member) -> None:
        self.members[(member.room_id, member.member_id)] = member

    async def get_member(self, room_id: str, member_id: str) -> Member | None:
        return self.members.get((room_id, member_id))

    def add(self, room_id: str, member_id: str, name: str, language: str, hear: str | None = None,
            role: str = "speaker", minutes: int = 60) -> Member:
        """A room (open for `minutes`) and a member in it, as a join would have stored them."""
        now = datetime.now(UTC)
        self.rooms.setdefault(room_id, Room(room_id, "Room", now, now + timedelta(minutes=minutes)))
        member = Member(room_id, member_id, name, language, hear or language, role)  # type: ignore[arg-type]
        self.members[(room_id, member_id)] = member
        return member


class NoIdentity:
    async def create_room(self, room: Room) -> str | None:
        return None

    async def add_member(self, room: Room, member: Member) -> dict[str, Any] | None:
        return None


def room_service(store: FakeRoomStore, broadcaster: FakeBroadcaster) -> RoomService:
    return RoomService(store, broadcaster, NoIdentity())


class FakeInterpreter:
    """Records chat lines; `gate` (when set) holds every translation until it is opened."""

    def __init__(self) -> None:
        self.chats: list[tuple[str, str, str, set[str]]] = []  # (userId, message id, text, languages)
        self.done: list[str] = []
        self.gate: asyncio.Event | None = None

    async def chat(self, speaker: Any, message_id: str, text: str, languages: set[str]) -> None:
        self.chats.append((speaker.user_id, message_id, text, set(languages)))
        if self.gate is not None:
            await self.gate.wait()
        self.done.append(message_id)


class FakeSegments:
    """SegmentStore: staged blocks and committed blobs, in memory."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}

    def stage(self, name: str, block_id: str, pcm: bytes) -> None:
        self.blocks[(name, block_id)] = pcm

    def commit(self, name: str, blocks: list[str], tail: bytes) -> None:
        self.blobs[name] = b"".join(self.blocks[(name, b)] for b in blocks) + tail


class FakeQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send_message(self, content: str) -> None:
        self.messages.append(json.loads(content))


@dataclass
class World:
    client: FakeDurableClient
    broadcaster: FakeBroadcaster
    service: FakeServiceClient
    store: FakeRoomStore
    interpreter: FakeInterpreter
    segments: FakeSegments
    queue: FakeQueue
