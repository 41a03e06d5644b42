"""Shared harness for the gateway tests: a gateway on a free port in its own loop thread, a recording
upstream sink, official-SDK clients and raw WebSocket helpers.

The gateway runs in its own event loop thread, like the twin host would run it, so the blocking
official SDKs (`WebPubSubClient`, `WebPubSubServiceClient`) can be driven from the test thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import websockets
from aiohttp import web
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    WebPubSubProtocolType,
)
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from waiting import wait_until

from babelroom.twin.gateway import (
    ConnectionContext,
    ConnectRequest,
    ConnectResult,
    Gateway,
    UserEventResult,
)

KEY = "twin-test-access-key-0123456789abcdef0123"
HUB = "rooms"
JOIN = "webpubsub.joinLeaveGroup"
SEND = "webpubsub.sendToGroup"
JSON_SUB = "json.webpubsub.azure.v1"
RELIABLE_SUB = "json.reliable.webpubsub.azure.v1"




def wait_for(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll until ``pred()`` is truthy: the SDK delivers callbacks on its own threads."""
    return wait_until(pred, timeout, what, interval=0.02)


class RecordingSink:
    """Upstream stand-in: records every event; behaviour is steered by query/event names."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.gate = asyncio.Event()  # used only on the server loop

    def record(self, kind: str, value: Any) -> None:
        with self.lock:
            self.events.append((kind, value))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [v for k, v in self.events if k == kind]

    async def connect(self, hub: str, request: ConnectRequest) -> ConnectResult:
        self.record("connect", request)
        refuse = request.query.get("refuse", [None])[0]
        if refuse == "raise":
            raise RuntimeError("connect handler bug")
        if refuse:
            return ConnectResult(ok=False, error_code=refuse, error_message=f"refused: {refuse}")
        extra = request.query.get("extraGroup", [])
        return ConnectResult(ok=True, groups=extra)

    async def connected(self, hub: str, context: ConnectionContext) -> None:
        self.record("connected", context)

    async def user_event(
        self, hub: str, event: str, context: ConnectionContext, data: Any, data_type: str
    ) -> UserEventResult:
        self.record("event", (event, context, data, data_type))
        if event == "boom":
            raise RuntimeError("handler bug")
        if event == "fail":
            return UserEventResult(ok=False, error_code="userError", error_message="bad chat line")
        if event == "slow":
            await asyncio.sleep(0.3)
        if event == "gate":  # held until the test opens the gate (Server.open_gate)
            await self.gate.wait()
        if event == "badreply":
            return UserEventResult(ok=True, data=b"\xff not json", data_type="json")
        if event == "silent":
            return UserEventResult(ok=True)
        if event == "message":  # simple WebSocket clients
            return UserEventResult(ok=True, data=f"echo:{data!r}", data_type="text")
        if data_type == "binary":
            data = base64.b64encode(data).decode("ascii")
        return UserEventResult(ok=True, data={"echo": event, "data": data, "dataType": data_type})

    async def disconnected(self, hub: str, context: ConnectionContext, reason: str | None) -> None:
        self.record("disconnected", (context, reason))


class Server:
    """Gateway mounted in an aiohttp app on a free port, served from a background loop thread."""

    def __init__(self, sink: Any = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cs = f"Endpoint={self.endpoint};AccessKey={KEY};Version=1.0;"
        self.sink = RecordingSink()
        self.gateway = Gateway(self.cs, sink if sink is not None else self.sink)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None
        self.call(self._start())

    async def _start(self) -> None:
        app = web.Application()

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/api/health", health)
        self.gateway.add_routes(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open_gate(self) -> None:
        """Let every held ``gate`` event (and later ones) through."""
        self.loop.call_soon_threadsafe(self.sink.gate.set)

    def connection(self, cid: str) -> Any:
        """The gateway's state for one connection (inspection only)."""
        return self.gateway._hubs[HUB].connections[cid]  # noqa: SLF001

    def stop(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def service(self) -> WebPubSubServiceClient:
        return WebPubSubServiceClient.from_connection_string(self.cs, hub=HUB)

    def url(self, **kwargs: Any) -> str:
        return self.service().get_client_access_token(**kwargs)["url"]


class Client:
    """An official WebPubSubClient with its callbacks collected."""

    def __init__(self, url: str, protocol: WebPubSubProtocolType = WebPubSubProtocolType.JSON_RELIABLE):
        self.lock = threading.Lock()
        self.group: list[Any] = []
        self.server_msgs: list[Any] = []
        self.connected: list[Any] = []
        self.disconnected: list[Any] = []
        self.client = WebPubSubClient(
            WebPubSubClientCredential(client_access_url_provider=lambda: url),
            protocol_type=protocol,
            ack_timeout=5,
            start_timeout=5,
            message_retry_total=0,
        )
        self.client.subscribe(CallbackType.GROUP_MESSAGE, self._add(self.group))
        self.client.subscribe(CallbackType.SERVER_MESSAGE, self._add(self.server_msgs))
        self.client.subscribe(CallbackType.CONNECTED, self._add(self.connected))
        self.client.subscribe(CallbackType.DISCONNECTED, self._add(self.disconnected))

    def _add(self, target: list[Any]) -> Callable[[Any], None]:
        def cb(e: Any) -> None:
            with self.lock:
                target.append(e)

        return cb

    def open(self) -> Client:
        self.client.open()
        wait_for(lambda: self.connected, what="connected message")
        return self

    @property
    def connection_id(self) -> str:
        return self.connected[0].connection_id

    def close(self) -> None:
        self.client.close()


def open_client(server: Server, clients: list[Client], **token: Any) -> Client:
    protocol = token.pop("protocol", WebPubSubProtocolType.JSON_RELIABLE)
    c = Client(server.url(**token), protocol)
    clients.append(c)
    return c.open()


def ws_url(server: Server, token: str | None = None, hub: str = HUB, **query: str) -> str:
    params = dict(query)
    if token is not None:
        params["access_token"] = token
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://127.0.0.1:{server.port}/client/hubs/{hub}" + (f"?{qs}" if qs else "")


def token_for(server: Server, **kwargs: Any) -> str:
    return server.service().get_client_access_token(**kwargs)["token"]


async def handshake_status(url: str, protocols: tuple[str, ...] = (JSON_SUB,)) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=protocols) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def recv_json(ws: Any, wait: float = 3) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), wait)
    return json.loads(raw)


def protocol_violation(server: Server, payload: str | bytes) -> tuple[int, list[dict[str, Any]], int]:
    """Send one bad frame on one socket; return its close code, what it got, and a bystander's count."""
    tok = token_for(server, user_id="offender", roles=[JOIN, SEND])
    tok2 = token_for(server, user_id="bystander", groups=["vg"])

    async def run() -> tuple[int, list[dict[str, Any]], int]:
        async with (
            websockets.connect(ws_url(server, tok2), subprotocols=[JSON_SUB]) as other,
            websockets.connect(ws_url(server, tok), subprotocols=[JSON_SUB], max_size=None) as ws,
        ):
            await recv_json(other)
            await recv_json(ws)
            await ws.send(payload)
            got: list[dict[str, Any]] = []
            try:
                while True:
                    got.append(await recv_json(ws))
            except websockets.ConnectionClosed:
                pass
            code = ws.close_code or 0
            # The bystander is unaffected and still receives group traffic.
            resp_ok = await asyncio.to_thread(
                server.service().send_to_group, "vg", "still here", content_type="text/plain"
            )
            assert resp_ok is None
            received = await recv_json(other)
            return code, got, 1 if received["data"] == "still here" else 0

    return server.call(run(), timeout=20)


def serve() -> Iterator[Server]:
    """Body of each test module's ``server`` fixture: one gateway per module."""
    s = Server()
    yield s
    s.stop()


def collect_clients() -> Iterator[list[Client]]:
    """Body of the ``clients`` fixture: SDK clients made by a test are closed after it."""
    made: list[Client] = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - best-effort teardown of SDK threads
            pass
