"""Web PubSub through azure-messaging-webpubsubservice: the broadcaster and the socket tokens.

The same client talks to Azure (Entra ID or key) and to the twin's gateway (key, plain http).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient


def service_client(env: Mapping[str, str]) -> WebPubSubServiceClient:
    hub = env.get("WEBPUBSUB_HUB", "rooms")
    conn = env.get("WebPubSubConnectionString")
    if conn and "AccessKey=" in conn:
        return WebPubSubServiceClient.from_connection_string(conn, hub=hub)
    from azure.identity.aio import ManagedIdentityCredential

    cred = ManagedIdentityCredential(client_id=env.get("AZURE_CLIENT_ID") or None)
    return WebPubSubServiceClient(endpoint=env["WEBPUBSUB_ENDPOINT"], hub=hub, credential=cred)


class WebPubSubBroadcaster:
    """Broadcaster port and SocketTokens port over one service client."""

    def __init__(self, client: WebPubSubServiceClient) -> None:
        self.client = client

    async def to_group(self, group: str, message: dict[str, Any]) -> None:
        await self.client.send_to_group(group, message, content_type="application/json")

    async def to_connection(self, connection_id: str, message: dict[str, Any]) -> None:
        await self.client.send_to_connection(connection_id, message, content_type="application/json")

    async def add_to_group(self, group: str, connection_id: str) -> None:
        await self.client.add_connection_to_group(group, connection_id)

    async def remove_from_group(self, group: str, connection_id: str) -> None:
        await self.client.remove_connection_from_group(group, connection_id)

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
