"""The local IdentityProvider: stands in for ACS Rooms + Identity by signing tokens itself.

Tokens are HS256 JWTs that expire with the room, so a client built against ACS tokens sees the
same shape (`userId`, `token`, `expiresOn`) and the same lifetime rules.
"""

from __future__ import annotations

from typing import Any

import jwt

from ..rooms import Member, Room


class LocalIdentity:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("BABELROOM_TOKEN_KEY must be set when ROOM_SERVICE=local")
        self.key = key

    async def create_room(self, room: Room) -> str | None:
        return None

    async def add_member(self, room: Room, member: Member) -> dict[str, Any] | None:
        claims = {
            "sub": f"local:{member.user_id}",
            "room": room.room_id,
            "role": "Presenter" if member.role == "speaker" else "Attendee",
            "iat": int(room.created_at.timestamp()),
            "exp": int(room.valid_until.timestamp()),
        }
        token = jwt.encode(claims, self.key, algorithm="HS256")
        return {"userId": claims["sub"], "token": token, "expiresOn": room.valid_until.isoformat()}
