"""ACS Rooms + Identity adapter for the RoomService port.

A babelroom room is also an ACS room so that an ACS call (voice/video next to the interpreted
audio) can be joined with the same lifetime and roles. The adapter only talks to ACS through the
official async SDKs (``azure.communication.rooms.aio`` / ``azure.communication.identity.aio``);
``tests/adapters/test_acs.py`` runs them against a local server that checks the HMAC signature
and the request shapes, because no Azure endpoint is reachable from CI.

Authentication, in order of precedence:

* ``ACS_CONNECTION_STRING`` (``endpoint=https://...;accesskey=...``): HMAC-SHA256 with the access
  key. Used by developers against a real resource and by the tests; never set in Azure.
* ``ACS_ENDPOINT`` + Entra ID: ``ManagedIdentityCredential(client_id=AZURE_CLIENT_ID)`` when
  ``AZURE_CLIENT_ID`` is set (the function app's user-assigned identity), otherwise
  ``DefaultAzureCredential`` (``az login`` / ``azd auth login`` on a laptop). The Identity and
  Rooms data planes both accept Entra tokens, so Azure needs no ACS key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.communication.identity import CommunicationTokenScope
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.communication.rooms import CommunicationUserIdentifier, ParticipantRole, RoomParticipant
from azure.communication.rooms.aio import RoomsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential

SETTINGS: tuple[str, ...] = ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "AZURE_CLIENT_ID")
"""Every setting this module reads (the config contract test checks them against the Bicep)."""

ROLE_MAP: dict[str, ParticipantRole] = {
    # A speaker may talk in the ACS call and share screen; a listener may join and hear it.
    "speaker": ParticipantRole.PRESENTER,
    "listener": ParticipantRole.ATTENDEE,
}

# Only calling: babelroom's chat and captions travel over Web PubSub, so "chat" would be an
# unused privilege. "voip.join" is not enough: the first participant of a room starts its call.
TOKEN_SCOPES: tuple[CommunicationTokenScope, ...] = (CommunicationTokenScope.VOIP,)

# ACS accepts custom token lifetimes between 1 h and 24 h (expiresInMinutes 60..1440).
MIN_TOKEN_LIFETIME = timedelta(hours=1)
MAX_TOKEN_LIFETIME = timedelta(hours=24)


class RoomLike(Protocol):
    """What the RoomService port passes for a room (babelroom.rooms.Room)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def valid_until(self) -> datetime: ...
    @property
    def acs_room_id(self) -> str | None: ...


class MemberLike(Protocol):
    """What the RoomService port passes for a member (babelroom.rooms.Member)."""

    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class AcsIdentity:
    """An ACS user added to a room: what the browser needs to join the room's call."""

    user_id: str
    token: str
    expires_on: datetime


def _aware(value: datetime, name: str) -> datetime:
    """ACS stores instants; a naive datetime would silently be read as local time."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def _parse_time(value: Any) -> datetime:
    """The SDKs hand ACS timestamps back as ISO-8601 strings (sometimes 7 fractional digits)."""
    if isinstance(value, datetime):
        return _aware(value, "timestamp")
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, sep, rest = text.partition(".")
    if sep:  # trim .NET's 100 ns precision to microseconds for fromisoformat
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:digits][:6] + rest[digits:]
        text = f"{head}.{rest}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def token_lifetime(valid_until: datetime, now: datetime) -> timedelta:
    """Token lifetime up to the room's end, clamped to what ACS accepts (1..24 h, whole minutes)."""
    remaining = _aware(valid_until, "valid_until") - _aware(now, "now")
    minutes = math.ceil(remaining.total_seconds() / 60)
    lifetime = timedelta(minutes=minutes)
    return max(MIN_TOKEN_LIFETIME, min(MAX_TOKEN_LIFETIME, lifetime))


class AcsRoomService:
    """RoomService backed by ACS Rooms (room lifetime, roles) and ACS Identity (user tokens)."""

    def __init__(
        self,
        rooms: RoomsClient,
        identity: CommunicationIdentityClient,
        *,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self._rooms = rooms
        self._identity = identity
        self._credential = credential  # owned, closed with the clients

    @classmethod
    def from_connection_string(cls, connection_string: str, **client_kwargs: Any) -> AcsRoomService:
        """Access-key (HMAC) clients; ``client_kwargs`` go to both SDK clients (transport, retries)."""
        rooms = RoomsClient.from_connection_string(connection_string, **client_kwargs)
        identity = CommunicationIdentityClient.from_connection_string(connection_string, **client_kwargs)
        return cls(rooms, identity)

    @classmethod
    def from_credential(
        cls,
        endpoint: str,
        credential: AsyncTokenCredential | AzureKeyCredential,
        **client_kwargs: Any,
    ) -> AcsRoomService:
        """Entra ID (or explicit key) clients for ``endpoint``; an async token credential is owned."""
        rooms = RoomsClient(endpoint, credential, **client_kwargs)
        identity = CommunicationIdentityClient(endpoint, credential, **client_kwargs)
        owned = None if isinstance(credential, AzureKeyCredential) else credential
        return cls(rooms, identity, credential=owned)

    async def create_room(self, valid_from: datetime | RoomLike, valid_until: datetime | None = None) -> str:
        """Create the ACS room that bounds when participants can join; returns its id.

        Takes the validity window, or a babelroom Room (the IdentityProvider port's call) whose
        ``created_at``/``valid_until`` are the window.
        """
        if not isinstance(valid_from, datetime):
            valid_from, valid_until = valid_from.created_at, valid_from.valid_until
        if valid_until is None:
            raise TypeError("create_room needs valid_until")
        start = _aware(valid_from, "valid_from")
        end = _aware(valid_until, "valid_until")
        if end <= start:
            raise ValueError("valid_until must be after valid_from")
        room = await self._rooms.create_room(valid_from=start, valid_until=end)
        return str(room.id)

    async def add_participant(
        self,
        acs_room_id: str,
        role: str,
        *,
        valid_until: datetime | None = None,
        now: datetime | None = None,
    ) -> AcsIdentity:
        """Create an ACS user with a calling token lasting until the room ends, then admit it.

        ``valid_until`` is the room's end when the caller knows it; otherwise it is read from ACS
        (one GET). The token is issued first and the user added second, so a failure leaves at
        worst an orphan identity that can never join, never a room member without a token.
        """
        try:
            participant_role = ROLE_MAP[role]
        except KeyError:
            raise ValueError(f"role must be one of {sorted(ROLE_MAP)}, not {role!r}") from None
        if valid_until is None:
            room = await self._rooms.get_room(room_id=acs_room_id)
            valid_until = _parse_time(room.valid_until)
        lifetime = token_lifetime(valid_until, now or datetime.now(UTC))
        user, token = await self._identity.create_user_and_token(list(TOKEN_SCOPES), token_expires_in=lifetime)
        await self._rooms.add_or_update_participants(
            room_id=acs_room_id,
            participants=[
                RoomParticipant(
                    communication_identifier=CommunicationUserIdentifier(user.raw_id),
                    role=participant_role,
                )
            ],
        )
        return AcsIdentity(user_id=user.raw_id, token=token.token, expires_on=_parse_time(token.expires_on))

    async def add_member(self, room: RoomLike, member: MemberLike) -> dict[str, Any] | None:
        """The IdentityProvider port: the join response's ``acs`` object, None for a room without ACS."""
        if not room.acs_room_id:
            return None
        identity = await self.add_participant(room.acs_room_id, member.role, valid_until=room.valid_until)
        return {"userId": identity.user_id, "token": identity.token, "expiresOn": identity.expires_on.isoformat()}

    async def aclose(self) -> None:
        """Close both SDK clients (their aiohttp sessions) and an owned credential."""
        await self._rooms.close()
        await self._identity.close()
        if self._credential is not None:
            await self._credential.close()

    async def __aenter__(self) -> AcsRoomService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def from_settings(env: Mapping[str, str], **client_kwargs: Any) -> AcsRoomService | None:
    """Build the adapter from app settings; None when ACS is not configured (local adapter then)."""
    connection_string = (env.get("ACS_CONNECTION_STRING") or "").strip()
    if connection_string:
        return AcsRoomService.from_connection_string(connection_string, **client_kwargs)
    endpoint = (env.get("ACS_ENDPOINT") or "").strip()
    if not endpoint:
        return None
    client_id = (env.get("AZURE_CLIENT_ID") or "").strip()
    credential: AsyncTokenCredential
    if client_id:
        from azure.identity.aio import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id)
    else:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return AcsRoomService.from_credential(endpoint, credential, **client_kwargs)
