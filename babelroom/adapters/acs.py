"""ACS Rooms + Identity adapter for the RoomService port: ACS Rooms is the membership authority.

A babelroom room is also an ACS room (same lifetime) and every member is an ACS participant with
the role the invite gave: a speaker is a Presenter, a listener a Consumer (an Attendee could speak
in the room's call). Each join creates one ACS identity and adds it; no ACS access token is issued,
because nothing in the page joins an ACS call (the interpreted audio travels over Web PubSub) and a
token nobody uses is only a credential to leak. When a page grows an ACS call, the token belongs
in its own endpoint, issued for the member's stored ACS identity.

The adapter only talks to ACS through the official async SDKs (``azure.communication.rooms.aio`` /
``azure.communication.identity.aio``); ``tests/adapters/test_acs.py`` runs them against a local
server that checks the HMAC signature and the request shapes, because no Azure endpoint is
reachable from CI. Failures propagate: the RoomService turns them into a 503 with Retry-After.

Authentication, in order of precedence:

* ``ACS_CONNECTION_STRING`` (``endpoint=https://...;accesskey=...``): HMAC-SHA256 with the access
  key. Used by developers against a real resource and by the tests; never set in Azure.
* ``ACS_ENDPOINT`` + Entra ID: ``ManagedIdentityCredential(client_id=AZURE_CLIENT_ID)`` when
  ``AZURE_CLIENT_ID`` is set (the function app's user-assigned identity), otherwise
  ``DefaultAzureCredential`` (``az login`` / ``azd auth login`` on a laptop). The Identity and
  Rooms data planes both accept Entra tokens, so Azure needs no ACS key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.communication.identity.aio import CommunicationIdentityClient
from azure.communication.rooms import CommunicationUserIdentifier, ParticipantRole, RoomParticipant
from azure.communication.rooms.aio import RoomsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential

SETTINGS: tuple[str, ...] = ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "AZURE_CLIENT_ID")
"""Every setting this module reads (the config contract test checks them against the Bicep)."""

ROLE_MAP: dict[str, ParticipantRole] = {
    # A speaker may talk in the room's call and share screen; a listener may only receive:
    # Consumer, not Attendee (an Attendee can unmute and speak).
    "speaker": ParticipantRole.PRESENTER,
    "listener": ParticipantRole.CONSUMER,
}


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


def _aware(value: datetime, name: str) -> datetime:
    """ACS stores instants; a naive datetime would silently be read as local time."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


class AcsRoomService:
    """IdentityProvider backed by ACS Rooms (room lifetime, participants, roles) and ACS Identity."""

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

    async def add_participant(self, acs_room_id: str, role: str) -> str:
        """Create an ACS identity and admit it to the room with the role's ACS role; its raw id.

        The identity is created first and added second, so a failure leaves at worst an orphan
        identity that belongs to no room, never a participant we do not know about.
        """
        try:
            participant_role = ROLE_MAP[role]
        except KeyError:
            raise ValueError(f"role must be one of {sorted(ROLE_MAP)}, not {role!r}") from None
        user = await self._identity.create_user()
        await self._rooms.add_or_update_participants(
            room_id=acs_room_id,
            participants=[RoomParticipant(communication_identifier=user, role=participant_role)],
        )
        return str(user.raw_id)

    async def remove_participant(self, acs_room_id: str, acs_user_id: str) -> None:
        """Take a removed member out of the ACS room (the room's record of who may be in it)."""
        await self._rooms.remove_participants(
            room_id=acs_room_id, participants=[CommunicationUserIdentifier(acs_user_id)]
        )

    async def add_member(self, room: RoomLike, member: MemberLike) -> dict[str, Any] | None:
        """The IdentityProvider port: ``{"userId": <ACS raw id>}``, None for a room without ACS."""
        if not room.acs_room_id:
            return None
        return {"userId": await self.add_participant(room.acs_room_id, member.role)}

    async def remove_member(self, room: RoomLike, member: MemberLike) -> None:
        acs_user_id = getattr(member, "acs_user_id", None)
        if room.acs_room_id and acs_user_id:
            await self.remove_participant(room.acs_room_id, acs_user_id)

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
