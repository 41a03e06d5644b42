"""The broadcaster port: where server messages (docs/protocol.md §4) go.

The Web PubSub adapter (`babelroom.adapters.webpubsub`) uses azure-messaging-webpubsubservice; the
same client talks to Azure and to the twin's gateway.
"""

from __future__ import annotations

from typing import Any, Protocol


class Broadcaster(Protocol):
    async def to_group(self, group: str, message: dict[str, Any]) -> None: ...

    async def to_connection(self, connection_id: str, message: dict[str, Any]) -> None: ...


def group_name(room_id: str, language: str) -> str:
    """One Web PubSub group per room and listener language: captions, audio and chat."""
    return f"{room_id}.{language}"


def room_group(room_id: str) -> str:
    """The room-wide group every connection of the room joins at connect: presence and speaking
    go out once to it, not once per language group. ("all" is no language code we support.)"""
    return f"{room_id}.all"
