"""Web PubSub through azure-messaging-webpubsubservice: the broadcaster and the socket tokens.

The same client talks to Azure (Entra ID or key) and to the twin's gateway (key, plain http).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient

from ..config import Settings
from .credentials import credential


def _client(cls: Any, settings: Settings | Mapping[str, str], *, aio: bool) -> Any:
    """Key auth when the connection string has an AccessKey (twin, gateway); else Entra ID."""
    s = settings if isinstance(settings, Settings) else Settings.from_env(settings)
    conn = s.webpubsub_connection_string
    if conn and "AccessKey=" in conn:
        return cls.from_connection_string(conn, hub=s.hub)
    if not s.webpubsub_endpoint:
        raise ValueError("Web PubSub needs WebPubSubConnectionString (with AccessKey) or WEBPUBSUB_ENDPOINT")
    return cls(endpoint=s.webpubsub_endpoint, hub=s.hub, credential=credential(s, aio=aio))


def service_client(settings: Settings | Mapping[str, str]) -> WebPubSubServiceClient:
    return _client(WebPubSubServiceClient, settings, aio=True)


def sync_service_client(settings: Settings | Mapping[str, str]) -> Any:
    """The blocking client, for entity functions (sync by the Durable SDK's contract)."""
    from azure.messaging.webpubsubservice import WebPubSubServiceClient as SyncClient

    return _client(SyncClient, settings, aio=False)


class WebPubSubBroadcaster:
    """Broadcaster port and SocketTokens port over one service client."""

    def __init__(self, client: WebPubSubServiceClient) -> None:
        self.client = client

    async def to_group(self, group: str, message: dict[str, Any]) -> None:
        await self.client.send_to_group(group, message, content_type="application/json")

    async def to_connection(self, connection_id: str, message: dict[str, Any]) -> None:
        await self.client.send_to_connection(connection_id, message, content_type="application/json")

    async def client_url(self, user_id: str, minutes: int) -> str:
        """No roles: clients cannot join or publish to groups themselves (docs/protocol.md §1)."""
        token = await self.client.get_client_access_token(user_id=user_id, minutes_to_expire=minutes)
        return token["url"]

    async def close_user(self, user_id: str, reason: str) -> None:
        """Connections port: a removed member's sockets close (REST users/{id}/:closeConnections)."""
        await self.client.close_user_connections(user_id, reason=reason)

    async def close_group(self, group: str, reason: str) -> None:
        """Connections port: a closed or ended room's sockets close (groups/{g}/:closeConnections)."""
        await self.client.close_group_connections(group, reason=reason)

    async def ping(self) -> None:
        await self.client.group_exists("health")
