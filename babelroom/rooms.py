"""Rooms, members and roles, and the RoomService port that creates rooms and issues join tickets.

A room lives for a bounded time; every token issued for it expires with it. The Web PubSub userId
is "{roomId}.{memberId}" so the signed token itself names the room the connection belongs to.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

Role = Literal["speaker", "listener"]
ROLES: tuple[Role, ...] = ("speaker", "listener")
DEFAULT_MINUTES = 120
MAX_MINUTES = 24 * 60
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_ROOM_ID = re.compile(r"^[a-z0-9]{6,32}$")


class RoomError(Exception):
    """An error the caller caused or must see; `status` maps it onto HTTP."""

    status = 400
    code = "bad_request"


class BadRequest(RoomError):
    pass


class RoomNotFound(RoomError):
    status = 404
    code = "not_found"


class RoomExpired(RoomError):
    status = 410
    code = "gone"


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_language(tag: Any) -> str:
    """BCP-47 tag -> primary language subtag ("pt-BR" -> "pt"); groups and models are per language."""
    if not isinstance(tag, str) or not _LANG.match(tag.strip()):
        raise BadRequest(f"language must be a BCP-47 tag like 'es', got {tag!r}")
    return tag.strip().split("-")[0].split("_")[0].lower()


def _text(value: Any, name: str, lo: int, hi: int) -> str:
    if not isinstance(value, str) or not lo <= len(value.strip()) <= hi:
        raise BadRequest(f"{name} must be a string of {lo} to {hi} characters")
    return value.strip()


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str
    created_at: datetime
    valid_until: datetime
    acs_room_id: str | None = None

    def check_open(self, now: datetime | None = None) -> None:
        if (now or utcnow()) >= self.valid_until:
            raise RoomExpired(f"room {self.room_id} expired at {self.valid_until.isoformat()}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["valid_until"] = self.valid_until.isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Room:
        return cls(
            room_id=d["room_id"],
            name=d["name"],
            created_at=datetime.fromisoformat(d["created_at"]),
            valid_until=datetime.fromisoformat(d["valid_until"]),
            acs_room_id=d.get("acs_room_id"),
        )

    def public(self) -> dict[str, Any]:
        return {"roomId": self.room_id, "name": self.name, "validUntil": self.valid_until.isoformat()}


@dataclass(frozen=True)
class Member:
    room_id: str
    member_id: str
    display_name: str
    language: str
    hear: str
    role: Role
    acs_user_id: str | None = None

    @property
    def user_id(self) -> str:
        return f"{self.room_id}.{self.member_id}"

    def participant(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "displayName": self.display_name,
            "language": self.language,
            "hear": self.hear,
            "role": self.role,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Member:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def split_user_id(user_id: str) -> tuple[str, str]:
    """"{roomId}.{memberId}" -> (roomId, memberId); raises BadRequest for anything else."""
    room_id, sep, member_id = (user_id or "").partition(".")
    if not sep or not _ROOM_ID.match(room_id) or not _ROOM_ID.match(member_id):
        raise BadRequest(f"not a babelroom user id: {user_id!r}")
    return room_id, member_id


def new_id(n: int = 8) -> str:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass(frozen=True)
class CreateRoom:
    name: str
    minutes: int

    @classmethod
    def parse(cls, body: Any) -> CreateRoom:
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        name = body.get("name", "Room")
        name = _text(name, "name", 1, 80)
        minutes = body.get("validForMinutes", DEFAULT_MINUTES)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
            raise BadRequest(f"validForMinutes must be an integer from 1 to {MAX_MINUTES}")
        return cls(name=name, minutes=minutes)


@dataclass(frozen=True)
class JoinRoom:
    display_name: str
    language: str
    hear: str
    role: Role

    @classmethod
    def parse(cls, body: Any) -> JoinRoom:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        role = body.get("role", "speaker")
        if role not in ROLES:
            raise BadRequest("role must be 'speaker' or 'listener'")
        language = normalize_language(body.get("language"))
        hear = normalize_language(body["hear"]) if body.get("hear") else language
        return cls(_text(body.get("displayName"), "displayName", 1, 40), language, hear, role)


@dataclass(frozen=True)
class JoinTicket:
    """What a joining member receives: a socket URL and, where ACS runs, an ACS identity."""

    room: Room
    member: Member
    url: str
    expires_at: datetime
    identity: dict[str, Any] | None = field(default=None)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "userId": self.member.user_id,
            "expiresAt": self.expires_at.isoformat(),
            "roomId": self.room.room_id,
            "group": f"{self.room.room_id}.{self.member.hear}",
        }
        if self.identity:
            out["acs"] = self.identity
        return out


class RoomStore(Protocol):
    """Durable record of rooms and members (Blob in both hosts)."""

    async def save_room(self, room: Room) -> None: ...

    async def get_room(self, room_id: str) -> Room | None: ...

    async def save_member(self, member: Member) -> None: ...

    async def get_member(self, room_id: str, member_id: str) -> Member | None: ...


class SocketTokens(Protocol):
    """Issues Web PubSub client URLs."""

    async def client_url(self, user_id: str, minutes: int) -> str: ...


class IdentityProvider(Protocol):
    """Where a room's media identity comes from: ACS Rooms + Identity, or self-signed locally."""

    async def create_room(self, room: Room) -> str | None: ...

    async def add_member(self, room: Room, member: Member) -> dict[str, Any] | None: ...


class RoomService:
    """Creates rooms and issues join tickets; the same code behind both hosts' HTTP functions."""

    MEMBER_CACHE_SECONDS = 60.0

    def __init__(self, store: RoomStore, tokens: SocketTokens, identity: IdentityProvider) -> None:
        self.store = store
        self.tokens = tokens
        self.identity = identity
        # Every socket event checks membership; rooms and members never move, so a worker keeps
        # them for a minute instead of reading Blob twice per audio frame (a rename elsewhere shows within it).
        self._members: dict[str, tuple[float, Room, Member]] = {}

    async def create(self, req: CreateRoom, now: datetime | None = None) -> Room:
        now = now or utcnow()
        room = Room(new_id(), req.name, now, now + timedelta(minutes=req.minutes))
        acs_id = await self.identity.create_room(room)
        if acs_id:
            room = Room(room.room_id, room.name, room.created_at, room.valid_until, acs_id)
        await self.store.save_room(room)
        return room

    async def open_room(self, room_id: str, now: datetime | None = None) -> Room:
        if not isinstance(room_id, str) or not _ROOM_ID.match(room_id):
            raise RoomNotFound(f"no room {room_id!r}")
        room = await self.store.get_room(room_id)
        if room is None:
            raise RoomNotFound(f"no room {room_id!r}")
        room.check_open(now)
        return room

    async def join(self, room_id: str, req: JoinRoom, now: datetime | None = None) -> JoinTicket:
        now = now or utcnow()
        room = await self.open_room(room_id, now)
        member = Member(room.room_id, new_id(), req.display_name, req.language, req.hear, req.role)
        identity = await self.identity.add_member(room, member)
        if identity and identity.get("userId"):
            member = Member(**{**member.to_json(), "acs_user_id": identity["userId"]})
        await self.store.save_member(member)
        minutes = max(1, int((room.valid_until - now).total_seconds() // 60))
        url = await self.tokens.client_url(member.user_id, minutes)
        return JoinTicket(room, member, url, now + timedelta(minutes=minutes), identity)

    async def member_for(self, user_id: str, now: datetime | None = None) -> tuple[Room, Member]:
        """The connect check: the token's user must be a member of a room that is still open."""
        cached = self._members.get(user_id)
        if cached and time.monotonic() - cached[0] < self.MEMBER_CACHE_SECONDS:
            cached[1].check_open(now)  # expiry is still checked on every event
            return cached[1], cached[2]
        room_id, member_id = split_user_id(user_id)
        room = await self.open_room(room_id, now)
        member = await self.store.get_member(room_id, member_id)
        if member is None:
            raise RoomNotFound(f"{user_id} is not a member of room {room_id}")
        if len(self._members) > 10_000:
            self._members.clear()
        self._members[user_id] = (time.monotonic(), room, member)
        return room, member

    async def rename(self, member: Member, display_name: str) -> Member:
        renamed = Member(**{**member.to_json(), "display_name": display_name})
        await self.store.save_member(renamed)
        self._members.pop(member.user_id, None)
        return renamed
