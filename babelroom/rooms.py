"""Rooms, members and roles, and the RoomService port that creates rooms and issues join tickets.

A room lives for a bounded time; every token issued for it expires with it. The Web PubSub userId
is "{roomId}.{memberId}" so the signed token itself names the room the connection belongs to.

The room id is not a secret (it shows in links and logs). What lets someone in is an invite: a
room has a speaker invite and a listener invite (random, >= 128 bits), and the role comes from the
invite used. The host key lets its holder remove members and close the room; each member gets a
member key to read the room and rejoin as the same member. Only SHA-256 digests of these secrets
are stored: a leaked blob does not let anyone in.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from .broadcaster import room_group

Role = Literal["speaker", "listener"]
ROLES: tuple[Role, ...] = ("speaker", "listener")
DEFAULT_MINUTES = 120
MAX_MINUTES = 24 * 60
# The one list of languages babelroom interprets (web/js/api.js shows the same names). Each target
# language costs a model session per segment, so anything else is refused, not attempted.
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español", "pt": "Português", "fr": "Français",
                             "de": "Deutsch"}
MAX_MEMBERS = 50  # members per room (each rejoin with a member key reuses its member)
MAX_TARGET_LANGUAGES = 4  # distinct languages heard in one room: each is a translation per segment
SECRET_BYTES = 18  # 144-bit invites, host and member keys
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_ROOM_ID = re.compile(r"^[a-z0-9]{6,32}$")
_SECRET = re.compile(r"^[A-Za-z0-9_.-]{16,128}$")
log = logging.getLogger(__name__)


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


class Unauthorized(RoomError):
    """No credential where one is needed (HTTP 401)."""

    status = 401
    code = "unauthorized"


class Forbidden(RoomError):
    """A credential that does not open this room, or not for this action (HTTP 403)."""

    status = 403
    code = "forbidden"


class RoomFull(RoomError):
    """A per-room cap (members, target languages) would be exceeded (HTTP 409)."""

    status = 409
    code = "room_full"


class Unavailable(RoomError):
    """A dependency (ACS) failed; the request was not applied and may be retried (HTTP 503)."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def digest(secret: str) -> str:
    """What is stored for a secret. Plain SHA-256 suffices: the secrets are 144 random bits."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _matches(secret: str, stored: str | None) -> bool:
    return bool(stored) and hmac.compare_digest(digest(secret), stored or "")


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_language(tag: Any) -> str:
    """BCP-47 tag -> a supported primary language ("pt-BR" -> "pt"); groups and models are per language."""
    supported = ", ".join(LANGUAGES)
    if not isinstance(tag, str) or len(tag) > 35 or not _LANG.match(tag.strip()):
        raise BadRequest(f"language must be one of {supported} (a BCP-47 tag like 'es' or 'pt-BR')")
    primary = tag.strip().split("-")[0].split("_")[0].lower()
    if primary not in LANGUAGES:
        raise BadRequest(f"language {primary!r} is not supported; use one of {supported}")
    return primary


def _text(value: Any, name: str, lo: int, hi: int) -> str:
    if not isinstance(value, str) or not lo <= len(value.strip()) <= hi:
        raise BadRequest(f"{name} must be a string of {lo} to {hi} characters")
    return value.strip()


def _secret_field(body: dict[str, Any], name: str) -> str | None:
    """An optional secret from a request body: absent, or a string shaped like one we issue."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise BadRequest(f"{name} must be the string from the invite link")
    return value.strip()


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str
    created_at: datetime
    valid_until: datetime
    acs_room_id: str | None = None
    host_key_hash: str | None = None
    speaker_invite_hash: str | None = None
    listener_invite_hash: str | None = None
    closed_at: datetime | None = None

    def check_open(self, now: datetime | None = None) -> None:
        if self.closed_at is not None:
            raise RoomExpired(f"room {self.room_id} was closed by its host")
        if (now or utcnow()) >= self.valid_until:
            raise RoomExpired(f"room {self.room_id} expired at {self.valid_until.isoformat()}")

    def role_for(self, invite: str | None) -> Role:
        """The role an invite grants in this room; Forbidden for anything else."""
        if invite and _matches(invite, self.speaker_invite_hash):
            return "speaker"
        if invite and _matches(invite, self.listener_invite_hash):
            return "listener"
        raise Forbidden(f"this invite does not open room {self.room_id}; ask the host for a new link")

    def is_host(self, key: str | None) -> bool:
        return bool(key) and _matches(key or "", self.host_key_hash)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("created_at", "valid_until", "closed_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Room:
        return cls(
            room_id=d["room_id"],
            name=d["name"],
            created_at=datetime.fromisoformat(d["created_at"]),
            valid_until=datetime.fromisoformat(d["valid_until"]),
            acs_room_id=d.get("acs_room_id"),
            host_key_hash=d.get("host_key_hash"),
            speaker_invite_hash=d.get("speaker_invite_hash"),
            listener_invite_hash=d.get("listener_invite_hash"),
            closed_at=_time(d.get("closed_at")),
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
    key_hash: str | None = None

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
    """A join: an invite (the role comes from it), or the member key of an earlier join (rejoin)."""

    display_name: str
    language: str
    hear: str
    invite: str | None
    member_key: str | None = None

    @classmethod
    def parse(cls, body: Any) -> JoinRoom:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        name = _text(body.get("displayName"), "displayName", 1, 40)
        language = normalize_language(body.get("language"))
        hear = normalize_language(body["hear"]) if body.get("hear") else language
        invite = _secret_field(body, "invite")
        member_key = _secret_field(body, "memberKey")
        if not invite and not member_key:
            raise Unauthorized("joining needs an invite: open the invite link the host shared")
        return cls(name, language, hear, invite, member_key)


@dataclass(frozen=True)
class CreatedRoom:
    """A new room and its secrets: returned once, to its creator, and never stored in the clear."""

    room: Room
    host_key: str
    speaker_invite: str
    listener_invite: str

    def public(self) -> dict[str, Any]:
        return self.room.public() | {
            "hostKey": self.host_key,
            "invites": {"speaker": self.speaker_invite, "listener": self.listener_invite},
        }


@dataclass(frozen=True)
class JoinTicket:
    """What a joining member receives: a socket URL that expires with the room, and a member key."""

    room: Room
    member: Member
    url: str
    expires_at: datetime
    member_key: str
    identity: dict[str, Any] | None = field(default=None)

    def public(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "userId": self.member.user_id,
            "memberKey": self.member_key,
            "role": self.member.role,
            "roomId": self.room.room_id,
            "name": self.room.name,
            "validUntil": self.room.valid_until.isoformat(),
            "expiresAt": self.expires_at.isoformat(),
            "displayName": self.member.display_name,
            "language": self.member.language,
            "hear": self.member.hear,
            "group": f"{self.room.room_id}.{self.member.hear}",
        }


class RoomStore(Protocol):
    """Durable record of rooms and members (Blob in both hosts)."""

    async def save_room(self, room: Room) -> None: ...

    async def get_room(self, room_id: str) -> Room | None: ...

    async def save_member(self, member: Member) -> None: ...

    async def get_member(self, room_id: str, member_id: str) -> Member | None: ...

    async def roster(self, room_id: str) -> dict[str, str]:
        """member id -> the language it hears, for every member of the room (one listing)."""
        ...

    async def delete_member(self, room_id: str, member_id: str) -> None: ...

    async def schedule_end(self, room: Room) -> None:
        """Remember that the room's connections must be closed at its validUntil."""

    async def due_rooms(self, now: datetime) -> list[tuple[str, str]]:
        """(schedule key, room id) of rooms whose end has passed and were not yet ended."""
        ...

    async def ended(self, key: str) -> None: ...


class SocketTokens(Protocol):
    """Issues Web PubSub client URLs."""

    async def client_url(self, user_id: str, minutes: int) -> str: ...


class Connections(Protocol):
    """Closes live sockets (Web PubSub REST): a removed member's, or a whole room's."""

    async def close_user(self, user_id: str, reason: str) -> None: ...

    async def close_group(self, group: str, reason: str) -> None: ...


class IdentityProvider(Protocol):
    """Membership authority next to ours: ACS Rooms, or nothing locally."""

    async def create_room(self, room: Room) -> str | None: ...

    async def add_member(self, room: Room, member: Member) -> dict[str, Any] | None: ...


class RoomService:
    """Creates rooms and issues join tickets; the same code behind both hosts' HTTP functions."""

    MEMBER_CACHE_SECONDS = 60.0
    RETRY_AFTER = 5  # seconds a client waits after the membership authority (ACS) failed

    def __init__(self, store: RoomStore, tokens: SocketTokens, identity: IdentityProvider,
                 connections: Connections | None = None, *, max_members: int = MAX_MEMBERS,
                 max_languages: int = MAX_TARGET_LANGUAGES) -> None:
        self.store = store
        self.tokens = tokens
        self.identity = identity
        self.connections = connections
        self.max_members = max_members
        self.max_languages = max_languages
        # Every socket event checks membership; rooms and members rarely change, so a worker keeps
        # them for a minute instead of reading Blob twice per audio frame. Removal and closing drop
        # the entries in this worker; another worker sees them within the minute.
        self._members: dict[str, tuple[float, Room, Member]] = {}

    async def create(self, req: CreateRoom, now: datetime | None = None) -> CreatedRoom:
        now = now or utcnow()
        host, speaker, listener = new_secret(), new_secret(), new_secret()
        room = Room(new_id(), req.name, now, now + timedelta(minutes=req.minutes),
                    host_key_hash=digest(host), speaker_invite_hash=digest(speaker),
                    listener_invite_hash=digest(listener))
        try:
            acs_id = await self.identity.create_room(room)
        except Exception as e:
            log.warning("membership authority failed to create room: %s", type(e).__name__)
            raise Unavailable("the room service is unavailable; try again shortly", self.RETRY_AFTER) from e
        if acs_id:
            room = replace(room, acs_room_id=acs_id)
        await self.store.save_room(room)
        await self.store.schedule_end(room)
        return CreatedRoom(room, host, speaker, listener)

    async def open_room(self, room_id: str, now: datetime | None = None) -> Room:
        room = await self.find_room(room_id)
        room.check_open(now)
        return room

    async def find_room(self, room_id: str) -> Room:
        if not isinstance(room_id, str) or not _ROOM_ID.match(room_id):
            raise RoomNotFound(f"no room {room_id!r}")
        room = await self.store.get_room(room_id)
        if room is None:
            raise RoomNotFound(f"no room {room_id!r}")
        return room

    async def _member_by_key(self, room: Room, key: str) -> Member | None:
        member_id = key.partition(".")[0]
        if not _ROOM_ID.match(member_id):
            return None
        member = await self.store.get_member(room.room_id, member_id)
        return member if member and _matches(key, member.key_hash) else None

    async def join(self, room_id: str, req: JoinRoom, now: datetime | None = None) -> JoinTicket:
        now = now or utcnow()
        room = await self.open_room(room_id, now)
        # The socket token must not outlive the room: whole minutes, rounded down.
        minutes = int((room.valid_until - now).total_seconds() // 60)
        if minutes < 1:
            raise RoomExpired(f"room {room.room_id} ends in less than a minute")
        existing = await self._member_by_key(room, req.member_key) if req.member_key else None
        if req.member_key and existing is None:
            # Not a fall back to the invite: a removed member's page must not rejoin by itself.
            raise Forbidden(f"this member key does not open room {room.room_id} (removed by the host?)")
        if existing is None:
            role = room.role_for(req.invite)
            key_id = new_id()
            key = f"{key_id}.{new_secret()}"
            member = Member(room.room_id, key_id, req.display_name, req.language, req.hear, role,
                            key_hash=digest(key))
        else:
            key = req.member_key or ""
            member = replace(existing, display_name=req.display_name, language=req.language, hear=req.hear)
        others = {k: v for k, v in (await self.store.roster(room.room_id)).items() if k != member.member_id}
        if existing is None and len(others) >= self.max_members:
            raise RoomFull(f"room {room.room_id} is full ({self.max_members} members)")
        heard = set(others.values())
        if member.hear not in heard and len(heard) >= self.max_languages:
            raise RoomFull(f"room {room.room_id} already interprets into {self.max_languages} languages "
                           f"({', '.join(sorted(heard))}); choose one of those to hear")

        async def register() -> dict[str, Any] | None:
            if existing is not None and existing.acs_user_id:
                return None
            try:
                return await self.identity.add_member(room, member)
            except Exception as e:
                log.warning("membership authority failed on join: %s", type(e).__name__)
                raise Unavailable("the room service is unavailable; try again shortly", self.RETRY_AFTER) from e

        # The membership authority (ACS) and the socket token are independent: ask both at once.
        identity, url = await asyncio.gather(register(), self.tokens.client_url(member.user_id, minutes))
        if identity and identity.get("userId"):
            member = replace(member, acs_user_id=identity["userId"])
        await self.store.save_member(member)
        self._members.pop(member.user_id, None)
        return JoinTicket(room, member, url, now + timedelta(minutes=minutes), key, identity)

    async def authorize(self, room: Room, bearer: str | None) -> Member | None:
        """Who may read a room: the host (None) or a member (the Member); else 401/403."""
        if not bearer:
            raise Unauthorized("send Authorization: Bearer <hostKey or memberKey>")
        if room.is_host(bearer):
            return None
        member = await self._member_by_key(room, bearer)
        if member is None:
            raise Forbidden(f"this key does not open room {room.room_id}")
        return member

    def _require_host(self, room: Room, bearer: str | None) -> None:
        if not bearer:
            raise Unauthorized("send Authorization: Bearer <hostKey>")
        if not room.is_host(bearer):
            raise Forbidden(f"only the host of room {room.room_id} may do this")

    async def remove_member(self, room_id: str, user_id: str, bearer: str | None) -> Member:
        """The host removes a member: their record goes (no reconnect) and their sockets close."""
        room = await self.open_room(room_id)
        self._require_host(room, bearer)
        rid, member_id = split_user_id(user_id)
        member = await self.store.get_member(rid, member_id) if rid == room.room_id else None
        if member is None:
            raise RoomNotFound(f"{user_id!r} is not a member of room {room.room_id}")
        await self.store.delete_member(room.room_id, member.member_id)
        self._members.pop(member.user_id, None)
        if self.connections is not None:
            await self.connections.close_user(member.user_id, "removed by the host")
        remove = getattr(self.identity, "remove_member", None)
        if remove is not None:
            try:
                await remove(room, member)
            except Exception as e:  # our record is gone already; ACS only mirrors it
                log.warning("membership authority failed to remove a member: %s", type(e).__name__)
        return member

    async def close(self, room_id: str, bearer: str | None, now: datetime | None = None) -> Room:
        """The host ends the room: nobody can join or connect again and every socket closes."""
        room = await self.open_room(room_id, now)
        self._require_host(room, bearer)
        room = replace(room, closed_at=now or utcnow())
        await self.store.save_room(room)
        await self._close_connections(room, "the host closed the room")
        return room

    async def _close_connections(self, room: Room, reason: str) -> None:
        for user_id in [u for u in self._members if u.startswith(room.room_id + ".")]:
            self._members.pop(user_id, None)
        if self.connections is None:
            return
        await self.connections.close_group(room_group(room.room_id), reason)
        # Also by user: a connection that has not joined the room group yet still closes.
        roster = await self.store.roster(room.room_id)
        await asyncio.gather(*(self.connections.close_user(f"{room.room_id}.{m}", reason) for m in roster))

    async def end_due_rooms(self, now: datetime | None = None) -> list[str]:
        """Close the connections of every room past its validUntil (run by a timer)."""
        now = now or utcnow()
        ended: list[str] = []
        for key, room_id in await self.store.due_rooms(now):
            room = await self.store.get_room(room_id)
            if room is not None and room.valid_until <= now:
                await self._close_connections(room, "the room has ended")
                ended.append(room_id)
            await self.store.ended(key)
        return ended

    async def member_for(self, user_id: str, now: datetime | None = None,
                         fresh: bool = False) -> tuple[Room, Member]:
        """The connect check: the token's user must be a member of a room that is still open.

        `fresh` skips this worker's cache: the connect event should use it, so a member removed
        (or a room closed) through another worker cannot reconnect within the cache minute."""
        cached = None if fresh else self._members.get(user_id)
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
