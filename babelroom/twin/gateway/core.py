"""The Gateway object: settings, routes and shutdown, wiring the client endpoint and REST plane."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from babelroom.twin.wpsauth import parse_connection_string

from .client import ClientEndpoint
from .connection import Hub
from .rest import RestDataPlane
from .upstream import EventSink
from .wire import CLOSE_GOING_AWAY


class Gateway(ClientEndpoint, RestDataPlane):
    """The Web PubSub client endpoint + REST data plane for one connection string, all hubs."""

    def __init__(
        self,
        connection_string: str,
        hub_sink: EventSink,
        *,
        max_message_bytes: int = 1 << 20,
        recovery_window: float = 30.0,
        upstream_timeout: float = 60.0,
        outbound_queue_limit: int = 1024,
        reliable_buffer_messages: int = 1000,
        reliable_buffer_bytes: int = 16 << 20,
        ack_delay: float = 0.02,
        handshake_delay: float = 0.02,
    ) -> None:
        self.cs = parse_connection_string(connection_string)
        self.sink = hub_sink
        self.max_message_bytes = max_message_bytes
        self.recovery_window = recovery_window
        self.upstream_timeout = upstream_timeout
        self.outbound_queue_limit = outbound_queue_limit
        self.reliable_buffer_messages = reliable_buffer_messages
        self.reliable_buffer_bytes = reliable_buffer_bytes
        # azure-messaging-webpubsubclient 1.1.0 sends, *then* starts waiting on a condition variable:
        # an ack that arrives in between is lost and the call stalls for ack_timeout (30 s). Over a
        # real network the round trip hides that race; on loopback we imitate it by holding acks.
        self.ack_delay = ack_delay
        # Same race in WebPubSubClient.open(): it starts the socket thread, then waits for on_open;
        # a handshake that completes first leaves open() (and every recovery) waiting start_timeout.
        self.handshake_delay = handshake_delay
        self._hubs: dict[str, Hub] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ wiring

    def add_routes(self, app: web.Application) -> None:
        """Mount ``/client/hubs/{hub}``, ``/client/`` and ``/api/hubs/...`` on the host's app."""
        app.router.add_get("/client/hubs/{hub}", self._client_endpoint)
        app.router.add_get("/client/hubs/{hub}/", self._client_endpoint)
        app.router.add_get("/client/", self._client_endpoint)
        app.router.add_route("*", r"/api/hubs/{tail:[\s\S]*}", self._rest)  # [\s\S]: names may hold a newline
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Close every socket (1001) and forget all connections; no disconnected events."""
        for hub in self._hubs.values():
            for conn in list(hub.connections.values()):
                conn.closed = True
                if conn.expiry:
                    conn.expiry.cancel()
                if conn.transport:
                    conn.transport.abort(CLOSE_GOING_AWAY, "Service is shutting down.", recoverable=False)
        self._hubs.clear()
        for task in list(self._tasks):
            task.cancel()
        close = getattr(self.sink, "close", None)  # HttpUpstream owns an HTTP session
        if close is not None:
            await close()


    # ------------------------------------------------------------------ inspection (tests, host)

    def connection_ids(self, hub: str) -> list[str]:
        """Connection ids currently alive (attached or within their recovery window)."""
        h = self._hubs.get(hub.lower())
        return list(h.connections) if h else []

