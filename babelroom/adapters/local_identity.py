"""The local IdentityProvider: stands in for ACS Rooms where there is no ACS (the twin, `func start`).

Membership lives in babelroom's own room store either way; ACS only mirrors it. Locally there is
nothing to mirror, so a member gets a local id in the ACS id's place and no token: the ACS adapter
issues none either, because the page uses none (docs: issue 10, item 7).
"""

from __future__ import annotations

from typing import Any

from ..rooms import Member, Room


class LocalIdentity:
    def __init__(self, key: str = "") -> None:
        # BABELROOM_TOKEN_KEY signed the per-join token this class used to issue; nothing reads it now.
        self.key = key

    async def create_room(self, room: Room) -> str | None:
        return None

    async def add_member(self, room: Room, member: Member) -> dict[str, Any] | None:
        return {"userId": f"local:{member.user_id}"}

    async def remove_member(self, room: Room, member: Member) -> None:
        return None
