"""The twin gateway against the official Web PubSub SDKs and raw (browser-like) WebSocket clients.

The gateway runs in its own event loop thread, like the twin host would run it, so the blocking
official SDKs (`WebPubSubClient`, `WebPubSubServiceClient`) can be driven from the test thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
import websockets
from aiohttp import web
from azure.core.exceptions import ClientAuthenticationError
from azure.core.rest import HttpRequest
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OpenClientError,
    SendMessageError,
    WebPubSubDataType,
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

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cs = f"Endpoint={self.endpoint};AccessKey={KEY};Version=1.0;"
        self.sink = RecordingSink()
        self.gateway = Gateway(self.cs, self.sink)
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

    def stop(self) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def service(self) -> WebPubSubServiceClient:
        return WebPubSubServiceClient.from_connection_string(self.cs, hub=HUB)

    def url(self, **kwargs: Any) -> str:
        return self.service().get_client_access_token(**kwargs)["url"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


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


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - best-effort teardown of SDK threads
            pass


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


# ----------------------------------------------------------------- official client SDK


def test_sdk_client_groups_events_and_isolation(server: Server, clients: list[Client]) -> None:
    alice = open_client(server, clients, user_id="alice", roles=[JOIN, SEND])
    bob = open_client(server, clients, user_id="bob", roles=[JOIN])
    carol = open_client(server, clients, user_id="carol", roles=[JOIN])
    assert alice.connected[0].user_id == "alice"
    alice.client.join_group("g1")
    bob.client.join_group("g1")
    carol.client.join_group("g2")

    alice.client.send_to_group("g1", {"hello": "world"}, WebPubSubDataType.JSON)
    wait_for(lambda: bob.group and alice.group, what="group message at bob and alice (echo)")
    msg = bob.group[0]
    assert (msg.group, msg.data, msg.from_user_id, msg.sequence_id) == ("g1", {"hello": "world"}, "alice", 1)

    alice.client.send_to_group("g1", "plain", WebPubSubDataType.TEXT, no_echo=True)
    wait_for(lambda: len(bob.group) == 2, what="text message at bob")
    assert bob.group[1].data == "plain"
    time.sleep(0.2)
    assert len(alice.group) == 1, "noEcho must not echo to the sender"

    # A connection in another group never sees g1 traffic, from clients or from REST.
    server.service().send_to_group("g1", {"rest": True}, content_type="application/json")
    wait_for(lambda: len(bob.group) == 3, what="REST group message")
    time.sleep(0.2)
    assert carol.group == []

    # Roles: bob has joinLeave but not sendToGroup.
    with pytest.raises(SendMessageError) as err:
        bob.client.send_to_group("g1", "nope", WebPubSubDataType.TEXT)
    assert err.value.error_detail.name == "Forbidden"

    bob.client.leave_group("g1")
    server.service().send_to_group("g1", {"after": "leave"}, content_type="application/json")
    wait_for(lambda: len(alice.group) == 3, what="message after bob left")
    time.sleep(0.2)
    assert len(bob.group) == 3


def test_sdk_client_scoped_roles_and_forbidden_join(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="dave", roles=[f"{JOIN}.only", f"{SEND}.only"])
    c.client.join_group("only")
    c.client.send_to_group("only", 1, WebPubSubDataType.JSON)
    wait_for(lambda: c.group, what="echo in scoped group")
    with pytest.raises(SendMessageError) as err:
        c.client.join_group("other")
    assert err.value.error_detail.name == "Forbidden"
    nobody = open_client(server, clients, user_id="erin")
    with pytest.raises(SendMessageError):
        nobody.client.join_group("only")


def test_token_groups_and_connect_result_groups(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="frank", groups=["tg1", "tg2"])
    server.service().send_to_group("tg2", "hi", content_type="text/plain")
    wait_for(lambda: c.group, what="message to a token group")
    assert (c.group[0].group, c.group[0].data) == ("tg2", "hi")
    assert server.service().group_exists("tg1")


def test_sdk_send_event_with_ack_and_server_reply(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="gina")
    c.client.send_event("chat", {"text": "hola"}, WebPubSubDataType.JSON)
    # The reply is delivered before the ack, so it is there as soon as send_event returns.
    wait_for(lambda: c.server_msgs, what="server reply")
    assert c.server_msgs[0].data == {"echo": "chat", "data": {"text": "hola"}, "dataType": "json"}
    event, ctx, data, dtype = server.sink.of("event")[-1]
    assert (event, data, dtype, ctx.user_id, ctx.connection_id) == (
        "chat",
        {"text": "hola"},
        "json",
        "gina",
        c.connection_id,
    )
    assert ctx.event_type == "user" and ctx.signature and ctx.signature.startswith("sha256=")

    c.client.send_event("bin", memoryview(b"\x00\x01\xff"), WebPubSubDataType.BINARY)
    wait_for(lambda: len(c.server_msgs) == 2, what="binary event reply")
    assert server.sink.of("event")[-1][2:] == (b"\x00\x01\xff", "binary")

    c.client.send_event("silent", "x", WebPubSubDataType.TEXT, ack=False)
    wait_for(lambda: server.sink.of("event")[-1][0] == "silent", what="fire-and-forget event")

    connects = [r for r in server.sink.of("connect") if r.claims.get("sub") == ["gina"]]
    assert connects and connects[0].subprotocols == [RELIABLE_SUB]
    assert connects[0].context.event_name == "connect"
    assert any(ctx.connection_id == c.connection_id for ctx in server.sink.of("connected"))


def test_sdk_event_failures_are_failed_acks(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="hank")
    with pytest.raises(SendMessageError) as err:
        c.client.send_event("boom", "x", WebPubSubDataType.TEXT)
    assert err.value.error_detail.name == "InternalServerError"
    with pytest.raises(SendMessageError) as err:
        c.client.send_event("fail", "x", WebPubSubDataType.TEXT)
    assert err.value.error_detail.name == "BadRequest"
    assert err.value.error_detail.message == "bad chat line"
    with pytest.raises(SendMessageError) as err:
        c.client.send_event("badreply", "x", WebPubSubDataType.TEXT)
    assert err.value.error_detail.name == "InternalServerError"
    c.client.send_event("chat", "still fine", WebPubSubDataType.TEXT)
    wait_for(lambda: c.server_msgs, what="reply after failures")


def test_sdk_non_reliable_json_protocol(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="ivy", roles=[JOIN, SEND], protocol=WebPubSubProtocolType.JSON)
    c.client.join_group("np")
    c.client.send_to_group("np", "x", WebPubSubDataType.TEXT)
    wait_for(lambda: c.group, what="echo")
    assert c.group[0].sequence_id is None


# ----------------------------------------------------------------- official service SDK


def test_service_sdk_rest_calls(server: Server, clients: list[Client]) -> None:
    svc = server.service()
    a = open_client(server, clients, user_id="rest-a")
    b = open_client(server, clients, user_id="rest-b")
    assert svc.connection_exists(a.connection_id)
    assert not svc.connection_exists("nope")
    assert svc.user_exists("rest-a")
    assert not svc.user_exists("nobody")
    assert not svc.group_exists("rg")

    svc.add_connection_to_group("rg", a.connection_id)
    assert svc.group_exists("rg")
    svc.send_to_group("rg", {"n": 1}, content_type="application/json")
    wait_for(lambda: a.group, what="group message after add_connection_to_group")
    assert a.group[0].data == {"n": 1} and a.group[0].from_user_id is None
    svc.remove_connection_from_group("rg", a.connection_id)
    assert not svc.group_exists("rg")

    svc.send_to_connection(a.connection_id, "to-a", content_type="text/plain")
    wait_for(lambda: a.server_msgs, what="send_to_connection")
    assert a.server_msgs[0].data == "to-a"

    svc.send_to_user("rest-b", {"u": "b"}, content_type="application/json")
    wait_for(lambda: b.server_msgs, what="send_to_user")
    assert b.server_msgs[0].data == {"u": "b"}
    assert len(a.server_msgs) == 1

    svc.send_to_all(b"\x01\x02", content_type="application/octet-stream", excluded=[a.connection_id])
    wait_for(lambda: len(b.server_msgs) == 2, what="send_to_all binary")
    assert bytes(b.server_msgs[1].data) == b"\x01\x02"
    time.sleep(0.2)
    assert len(a.server_msgs) == 1, "excluded connection must not receive send_to_all"

    svc.add_user_to_group("ug", "rest-b")
    svc.send_to_group("ug", "ug-msg", content_type="text/plain")
    wait_for(lambda: b.group, what="user group message")
    svc.remove_user_from_group("ug", "rest-b")
    svc.add_user_to_group("ug2", "rest-b")
    svc.remove_user_from_all_groups("rest-b")
    assert not svc.group_exists("ug2")

    svc.grant_permission("sendToGroup", a.connection_id, target_name="pg")
    assert svc.has_permission("sendToGroup", a.connection_id, target_name="pg")
    a.client.join_group  # noqa: B018 - permission checked below with a send
    a.client.send_to_group("pg", "ok", WebPubSubDataType.TEXT)
    svc.revoke_permission("sendToGroup", a.connection_id, target_name="pg")
    assert not svc.has_permission("sendToGroup", a.connection_id, target_name="pg")

    svc.close_connection(a.connection_id, reason="bye")
    wait_for(lambda: not svc.connection_exists(a.connection_id), what="connection closed")
    wait_for(
        lambda: any(ctx.connection_id == a.connection_id and r == "bye" for ctx, r in server.sink.of("disconnected")),
        what="disconnected event with reason",
    )


def test_service_sdk_close_group_and_user_connections(server: Server, clients: list[Client]) -> None:
    svc = server.service()
    a = open_client(server, clients, user_id="close-a", groups=["cg"])
    b = open_client(server, clients, user_id="close-b")
    svc.close_group_connections("cg", reason="group closed")
    wait_for(lambda: not svc.connection_exists(a.connection_id), what="group connections closed")
    svc.close_user_connections("close-b")
    wait_for(lambda: not svc.connection_exists(b.connection_id), what="user connections closed")


def test_rest_generate_token_and_list_group(server: Server, clients: list[Client]) -> None:
    svc = server.service()
    req = HttpRequest(
        "POST",
        "/api/hubs/rooms/:generateToken?api-version=2024-12-01&userId=tok&role=webpubsub.joinLeaveGroup&minutesToExpire=5",
    )
    resp = svc.send_request(req)
    assert resp.status_code == 200
    token = resp.json()["token"]
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=f"{server.endpoint}/client/hubs/rooms")
    assert claims["sub"] == "tok" and claims["role"] == [JOIN]
    c = Client(f"ws://127.0.0.1:{server.port}/client/hubs/rooms?access_token={token}")
    clients.append(c)
    c.open()
    c.client.join_group("listed")
    listed = list(svc.list_connections(group="listed"))
    assert [(x.connection_id, x.user_id) for x in listed] == [(c.connection_id, "tok")]


def test_rest_auth_and_errors(server: Server) -> None:
    bad = WebPubSubServiceClient.from_connection_string(
        f"Endpoint={server.endpoint};AccessKey=wrong-key-0123456789abcdef0123456789;Version=1.0;", hub=HUB
    )
    with pytest.raises(ClientAuthenticationError):
        bad.send_to_all({"x": 1}, content_type="application/json")

    async def raw() -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        base = f"http://127.0.0.1:{server.port}/api/hubs/rooms"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/:send?api-version=2024-12-01", json={}) as r:
                out.append((r.status, await r.json()))

            def auth(url: str) -> dict[str, str]:
                tok = jwt.encode({"aud": url, "exp": int(time.time()) + 60}, KEY, algorithm="HS256")
                return {"Authorization": f"Bearer {tok}"}

            url = f"{base}/nothing/here?api-version=2024-12-01"
            async with http.get(url, headers=auth(url)) as r:
                out.append((r.status, await r.json()))
            url = f"{base}/:send?api-version=2024-12-01"
            big = b"x" * ((1 << 20) + 1)
            headers = {**auth(url), "Content-Type": "application/octet-stream"}
            async with http.post(url, data=big, headers=headers) as r:
                out.append((r.status, await r.json()))
            other = f"{base}/groups/g/:send?api-version=2024-12-01"
            async with http.post(url, data=b"{}", headers={**auth(other), "Content-Type": "application/json"}) as r:
                out.append((r.status, None))
            expired = jwt.encode({"aud": url, "exp": int(time.time()) - 60}, KEY, algorithm="HS256")
            hdr = {"Authorization": f"Bearer {expired}", "Content-Type": "application/json"}
            async with http.post(url, data=b"{}", headers=hdr) as r:
                out.append((r.status, None))
            async with http.get(f"http://127.0.0.1:{server.port}/api/health") as r:
                out.append((r.status, await r.json()))
        return out

    results = server.call(raw())
    assert results[0][0] == 401
    assert results[1] == (404, results[1][1]) and results[1][1]["code"] == "NotFound"
    assert results[2][0] == 413
    assert results[3][0] == 401, "a token for another URL must be refused"
    assert results[4][0] == 401, "an expired REST token must be refused"
    assert results[5] == (200, {"status": "ok"}), "the host's own /api routes still work"


# ----------------------------------------------------------------- handshake refusals


async def _handshake_status(url: str, protocols: tuple[str, ...] = (JSON_SUB,)) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=protocols) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_bad_tokens_and_hubs_are_refused(server: Server) -> None:
    good = token_for(server, user_id="x")
    expired = jwt.encode(
        {"aud": f"{server.endpoint}/client/hubs/rooms", "exp": int(time.time()) - 3600, "sub": "x"},
        KEY,
        algorithm="HS256",
    )
    wrong_key = jwt.encode(
        {"aud": f"{server.endpoint}/client/hubs/rooms", "exp": int(time.time()) + 3600},
        "another-key-0123456789abcdef0123456789",
        algorithm="HS256",
    )
    other_hub = WebPubSubServiceClient.from_connection_string(server.cs, hub="other").get_client_access_token()
    assert server.call(_handshake_status(ws_url(server, good))) == 101
    assert server.call(_handshake_status(ws_url(server, "not-a-jwt"))) == 401
    assert server.call(_handshake_status(ws_url(server))) == 401
    assert server.call(_handshake_status(ws_url(server, expired))) == 401
    assert server.call(_handshake_status(ws_url(server, wrong_key))) == 401
    assert server.call(_handshake_status(ws_url(server, other_hub["token"]))) == 401, "token for hub 'other'"
    assert server.call(_handshake_status(ws_url(server, good, hub="1bad"))) == 400
    assert server.call(_handshake_status(other_hub["url"].replace("/other?", "/OTHER?"))) == 101

    c = Client(ws_url(server, expired))
    with pytest.raises(OpenClientError):
        c.client.open()


def test_connect_handler_refusals_map_to_http_status(server: Server) -> None:
    tok = token_for(server, user_id="r")
    for code, status in [("unauthorized", 401), ("forbidden", 403), ("userError", 400), ("serverError", 500)]:
        assert server.call(_handshake_status(ws_url(server, tok, refuse=code))) == status
    assert server.call(_handshake_status(ws_url(server, tok, refuse="raise"))) == 500
    assert server.call(_handshake_status(ws_url(server, tok, extraGroup="eg"))) == 101


# ----------------------------------------------------------------- raw (browser-like) clients


async def _recv_json(ws: Any, wait: float = 3) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), wait)
    return json.loads(raw)


def test_browser_like_client_json_subprotocol(server: Server) -> None:
    tok = token_for(server, user_id="browser", roles=[JOIN, SEND])

    async def run() -> None:
        async with websockets.connect(ws_url(server, tok), subprotocols=[JSON_SUB]) as ws:
            assert ws.subprotocol == JSON_SUB
            hello = await _recv_json(ws)
            assert hello["type"] == "system" and hello["event"] == "connected"
            assert hello["userId"] == "browser" and "reconnectionToken" not in hello
            await ws.send(json.dumps({"type": "ping"}))
            assert await _recv_json(ws) == {"type": "pong"}
            await ws.send(json.dumps({"type": "joinGroup", "group": "bg", "ackId": 1}))
            assert await _recv_json(ws) == {"type": "ack", "ackId": 1, "success": True}
            await ws.send(json.dumps({"type": "joinGroup", "group": "bg", "ackId": 1}))
            dup = await _recv_json(ws)
            assert dup["success"] is False and dup["error"]["name"] == "Duplicate"
            await ws.send(json.dumps({"type": "sendToGroup", "group": "bg", "dataType": "binary", "data": "AAH/"}))
            msg = await _recv_json(ws)
            assert msg == {
                "type": "message",
                "from": "group",
                "group": "bg",
                "fromUserId": "browser",
                "dataType": "binary",
                "data": "AAH/",
            }
            await ws.send(json.dumps({"type": "event", "event": "chat", "dataType": "text", "data": "hi", "ackId": 2}))
            reply = await _recv_json(ws)
            assert reply["from"] == "server" and reply["data"]["data"] == "hi" and "sequenceId" not in reply
            assert await _recv_json(ws) == {"type": "ack", "ackId": 2, "success": True}
            # Bad frames that carry an ackId get a failed ack; the socket stays usable.
            await ws.send(json.dumps({"type": "whatever", "ackId": 3}))
            bad = await _recv_json(ws)
            assert bad["ackId"] == 3 and bad["success"] is False and bad["error"]["name"] == "BadRequest"
            await ws.send(json.dumps({"type": "event", "event": "bad name!", "data": 1, "ackId": 4}))
            assert (await _recv_json(ws))["error"]["name"] == "BadRequest"
            await ws.send(json.dumps({"type": "sendToGroup", "group": "bg", "dataType": "text", "data": 5, "ackId": 5}))
            assert (await _recv_json(ws))["error"]["name"] == "BadRequest"
            await ws.send(json.dumps({"type": "ping"}))
            assert await _recv_json(ws) == {"type": "pong"}

    server.call(run(), timeout=20)


def _protocol_violation(server: Server, payload: str | bytes) -> tuple[int, list[dict[str, Any]], int]:
    """Send one bad frame on one socket; return its close code, what it got, and a bystander's count."""
    tok = token_for(server, user_id="offender", roles=[JOIN, SEND])
    tok2 = token_for(server, user_id="bystander", groups=["vg"])

    async def run() -> tuple[int, list[dict[str, Any]], int]:
        async with (
            websockets.connect(ws_url(server, tok2), subprotocols=[JSON_SUB]) as other,
            websockets.connect(ws_url(server, tok), subprotocols=[JSON_SUB], max_size=None) as ws,
        ):
            await _recv_json(other)
            await _recv_json(ws)
            await ws.send(payload)
            got: list[dict[str, Any]] = []
            try:
                while True:
                    got.append(await _recv_json(ws))
            except websockets.ConnectionClosed:
                pass
            code = ws.close_code or 0
            # The bystander is unaffected and still receives group traffic.
            resp_ok = await asyncio.to_thread(
                server.service().send_to_group, "vg", "still here", content_type="text/plain"
            )
            assert resp_ok is None
            received = await _recv_json(other)
            return code, got, 1 if received["data"] == "still here" else 0

    return server.call(run(), timeout=20)


def test_malformed_json_closes_only_the_offender(server: Server) -> None:
    code, got, bystander = _protocol_violation(server, "{not json")
    assert code == 1007
    assert got and got[-1]["type"] == "system" and got[-1]["event"] == "disconnected"
    assert bystander == 1


def test_unknown_frame_without_ack_closes_only_the_offender(server: Server) -> None:
    code, _got, bystander = _protocol_violation(server, json.dumps({"type": "teleport"}))
    assert code == 1007 and bystander == 1


def test_oversize_frame_closes_only_the_offender(server: Server) -> None:
    code, _got, bystander = _protocol_violation(server, "x" * ((1 << 20) + 10))
    assert code == 1009 and bystander == 1


def test_binary_frame_on_json_protocol(server: Server) -> None:
    code, _got, bystander = _protocol_violation(server, b"\x00\x01")
    assert code == 1003 and bystander == 1


def test_simple_websocket_client(server: Server) -> None:
    tok = token_for(server, user_id="simple")

    async def run() -> tuple[Any, Any]:
        async with websockets.connect(ws_url(server, tok)) as ws:
            assert ws.subprotocol is None
            await ws.send("hello")
            first = await asyncio.wait_for(ws.recv(), 3)
            await asyncio.to_thread(server.service().send_to_user, "simple", {"a": 1}, content_type="application/json")
            second = await asyncio.wait_for(ws.recv(), 3)
            return first, second

    first, second = server.call(run(), timeout=20)
    assert first == "echo:'hello'"
    assert json.loads(second) == {"a": 1}
    assert server.sink.of("event")[-1][0] == "message"


# ----------------------------------------------------------------- reliability


def test_recovery_resumes_same_connection_and_replays(server: Server, clients: list[Client]) -> None:
    svc = server.service()
    c = open_client(server, clients, user_id="rec", roles=[JOIN])
    cid = c.connection_id
    c.client.join_group("rec-g")
    svc.send_to_group("rec-g", "m0", content_type="text/plain")
    wait_for(lambda: len(c.group) == 1, what="first message")
    connects_before = len(server.sink.of("connect"))

    # Kill the socket from the server side and send while the client is detached.
    assert server.call(server.gateway.drop_socket(HUB, cid))
    for i in range(1, 6):
        svc.send_to_group("rec-g", f"m{i}", content_type="text/plain")
    svc.send_to_connection(cid, "direct", content_type="text/plain")

    wait_for(lambda: len(c.group) == 6 and c.server_msgs, timeout=10, what="replayed messages")
    time.sleep(0.3)
    by_seq = sorted(c.group, key=lambda e: e.sequence_id)
    assert [e.data for e in by_seq] == [f"m{i}" for i in range(6)], "exactly once, in order"
    assert [e.sequence_id for e in by_seq] == list(range(1, 7))
    assert len(c.group) == 6 and len(c.server_msgs) == 1
    assert svc.connection_exists(cid)
    assert len(c.connected) == 1 and c.client._connection_id == cid  # noqa: SLF001 - same session
    assert len(server.sink.of("connect")) == connects_before, "recovery must not re-run connect"
    assert not any(ctx.connection_id == cid for ctx, _ in server.sink.of("disconnected"))

    # Still a member of its groups after recovery.
    svc.send_to_group("rec-g", "after", content_type="text/plain")
    wait_for(lambda: len(c.group) == 7, what="message after recovery")


def test_sequence_ack_trims_the_buffer(server: Server, clients: list[Client]) -> None:
    svc = server.service()
    c = open_client(server, clients, user_id="acker")
    for i in range(5):
        svc.send_to_connection(c.connection_id, f"s{i}", content_type="text/plain")
    wait_for(lambda: len(c.server_msgs) == 5, what="messages")

    def buffered() -> int:
        conn = server.gateway._hubs[HUB].connections[c.connection_id]  # noqa: SLF001
        return len(conn.unacked)

    wait_for(lambda: buffered() == 0, timeout=4, what="sequenceAck to empty the buffer")


def test_recovery_window_expiry_and_bad_recovery(server: Server) -> None:
    tok = token_for(server, user_id="exp")

    async def run() -> tuple[int, int, bool]:
        server.gateway.recovery_window = 0.3
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(ws_url(server, tok), protocols=(RELIABLE_SUB,))
                hello = await ws.receive_json()
                cid, rtok = hello["connectionId"], hello["reconnectionToken"]
                await ws.close(code=4000)  # abnormal: recoverable for 0.3 s
                wrong = await http.ws_connect(
                    ws_url(server, tok, awps_connection_id=cid, awps_reconnection_token="forged"),
                    protocols=(RELIABLE_SUB,),
                )
                await wrong.receive()
                wrong_code = wrong.close_code or 0
                await asyncio.sleep(0.8)
                gone = cid not in server.gateway.connection_ids(HUB)
                late = await http.ws_connect(
                    ws_url(server, tok, awps_connection_id=cid, awps_reconnection_token=rtok),
                    protocols=(RELIABLE_SUB,),
                )
                await late.receive()
                return wrong_code, late.close_code or 0, gone
        finally:
            server.gateway.recovery_window = 30.0

    wrong_code, late_code, gone = server.call(run(), timeout=20)
    assert wrong_code == 1008 and late_code == 1008 and gone
    wait_for(lambda: any(ctx.user_id == "exp" for ctx, _ in server.sink.of("disconnected")), what="disconnected")


def test_json_protocol_drop_disconnects_at_once(server: Server) -> None:
    tok = token_for(server, user_id="np-drop")

    async def run() -> str:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(ws_url(server, tok), protocols=(JSON_SUB,))
            hello = await ws.receive_json()
            await ws.close(code=4000)
            return hello["connectionId"]

    cid = server.call(run())
    wait_for(lambda: any(ctx.connection_id == cid for ctx, _ in server.sink.of("disconnected")), what="disconnected")


def test_slow_consumer_is_closed_not_waited_for(server: Server) -> None:
    slow_tok = token_for(server, user_id="slow", groups=["flood"])
    fast_tok = token_for(server, user_id="fast", groups=["flood"])
    payload = base64.b64encode(os.urandom(300_000)).decode("ascii")  # incompressible, 400 kB

    async def run() -> tuple[int, float]:
        server.gateway.outbound_queue_limit = 8
        try:
            # websockets stops reading the socket once its small queue is full: a stuck browser tab.
            # A tiny receive buffer keeps the kernel from absorbing megabytes before the queue fills.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            slow = await websockets.connect(
                ws_url(server, slow_tok),
                sock=sock,
                subprotocols=[JSON_SUB],
                max_queue=1,
                compression=None,
                max_size=None,
            )
            async with websockets.connect(
                ws_url(server, fast_tok), subprotocols=[JSON_SUB], max_size=None, compression=None
            ) as fast:
                await _recv_json(fast)
                t0 = time.monotonic()
                svc = server.service()
                for _ in range(250):
                    await asyncio.to_thread(svc.send_to_group, "flood", payload, content_type="text/plain")
                    await _recv_json(fast)
                    if not any(c.user_id == "slow" for c in server.gateway._hubs[HUB].connections.values()):  # noqa: SLF001
                        break
                elapsed = time.monotonic() - t0
                cid_alive = any(
                    c.user_id == "slow"
                    for c in server.gateway._hubs[HUB].connections.values()  # noqa: SLF001
                )
                slow.transport.abort()  # it never read its messages: no polite close handshake
                return (0 if cid_alive else 1), elapsed
        finally:
            server.gateway.outbound_queue_limit = 1024

    removed, elapsed = server.call(run(), timeout=60)
    assert removed == 1, "the stuck client must be closed (1008) instead of buffering forever"
    assert elapsed < 30
    reasons = [r for ctx, r in server.sink.of("disconnected") if ctx.user_id == "slow"]
    assert reasons and "queue is full" in reasons[0]


def test_gateway_survives_everything_above(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="last")
    c.client.send_event("chat", "ok", WebPubSubDataType.TEXT)
    wait_for(lambda: c.server_msgs, what="still serving")


def test_client_side_network_drop_is_recovered(server: Server, clients: list[Client]) -> None:
    """No close frame at all (TCP cut from the client side): the SDK resumes the same connection."""
    c = open_client(server, clients, user_id="cut", groups=["cut-g"])
    cid = c.connection_id
    sdk_ws = c.client._ws  # noqa: SLF001 - reach the socket the way a network failure would
    assert sdk_ws is not None and sdk_ws.sock is not None
    sdk_ws.sock.sock.shutdown(socket.SHUT_RDWR)
    server.service().send_to_group("cut-g", "while-cut", content_type="text/plain")
    wait_for(lambda: c.group, timeout=10, what="message sent while the TCP connection was cut")
    assert c.group[0].data == "while-cut"
    assert c.client._connection_id == cid  # noqa: SLF001
    assert server.service().connection_exists(cid)


def test_sdk_close_disconnects_at_once(server: Server) -> None:
    c = Client(server.url(user_id="leaver"))
    c.open()
    cid = c.connection_id
    c.close()
    wait_for(
        lambda: any(ctx.connection_id == cid for ctx, _ in server.sink.of("disconnected")),
        timeout=3,
        what="disconnected right after a normal close (no 30 s recovery wait)",
    )


def test_query_hub_endpoint_header_token_and_odd_names(server: Server) -> None:
    tok = token_for(server, user_id="odd", roles=[JOIN])
    group = "sala café/1 ?&#"

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        url = f"ws://127.0.0.1:{server.port}/client/?hub=Rooms"
        headers = {"Authorization": f"Bearer {tok}"}
        async with websockets.connect(url, subprotocols=[JSON_SUB], additional_headers=headers) as ws:
            hello = await _recv_json(ws)
            await ws.send(json.dumps({"type": "joinGroup", "group": group, "ackId": 1}))
            ack = await _recv_json(ws)
            svc = WebPubSubServiceClient.from_connection_string(server.cs, hub="ROOMS")
            await asyncio.to_thread(svc.send_to_group, group, {"ok": "ü"}, content_type="application/json")
            msg = await _recv_json(ws)
            await ws.send('{"type":"sendToGroup","group":"x","dataType":"json","data":NaN,"ackId":2}')
            nan = await _recv_json(ws)  # NaN is not JSON: the frame is invalid, like "{not json"
            assert (nan["type"], nan["event"]) == ("system", "disconnected")
            return hello, ack, msg

    hello, ack, msg = server.call(run(), timeout=20)
    assert hello["userId"] == "odd" and ack["success"] is True
    assert msg["group"] == group and msg["data"] == {"ok": "ü"}


def test_sdk_acks_never_stall(server: Server, clients: list[Client]) -> None:
    """Guards the ack delay: SDK 1.1.0 loses acks that beat its cv.wait() and then stalls 5 s here."""
    c = open_client(server, clients, user_id="fast-acks", roles=[JOIN, SEND])
    t0 = time.monotonic()
    for i in range(10):
        c.client.join_group(f"fa{i}")
        c.client.send_to_group(f"fa{i}", i, WebPubSubDataType.JSON)
        c.client.send_event("silent", str(i), WebPubSubDataType.TEXT)
    assert time.monotonic() - t0 < 4.0


def test_plain_http_get_on_client_endpoint_is_400(server: Server) -> None:
    async def run() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.get(ws_url(server, token_for(server)).replace("ws://", "http://")) as r:
                return r.status

    before = len(server.sink.of("connect"))
    assert server.call(run()) == 400
    assert len(server.sink.of("connect")) == before, "no connect event for a non-WebSocket request"


def test_upstream_timeout_fails_the_ack(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="waiter")
    server.gateway.upstream_timeout = 0.1
    try:
        with pytest.raises(SendMessageError) as err:
            c.client.send_event("slow", "x", WebPubSubDataType.TEXT)
        assert err.value.error_detail.name == "Timeout"
    finally:
        server.gateway.upstream_timeout = 60.0
    c.client.send_event("chat", "after", WebPubSubDataType.TEXT)


def test_reliable_buffer_limit_drops_a_detached_connection(server: Server) -> None:
    tok = token_for(server, user_id="hoarder", groups=["hoard"])

    async def run() -> bool:
        server.gateway.reliable_buffer_messages = 5
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(ws_url(server, tok), protocols=(RELIABLE_SUB,))
                cid = (await ws.receive_json())["connectionId"]
                await ws.close(code=4000)  # detached, recoverable: messages pile up unacked
                await asyncio.sleep(0.05)
                svc = server.service()
                for i in range(6):
                    await asyncio.to_thread(svc.send_to_group, "hoard", str(i), content_type="text/plain")
                return cid not in server.gateway.connection_ids(HUB)
        finally:
            server.gateway.reliable_buffer_messages = 1000

    assert server.call(run(), timeout=20)
    wait_for(lambda: [r for ctx, r in server.sink.of("disconnected") if ctx.user_id == "hoarder"], what="disconnect")
    reasons = [r for ctx, r in server.sink.of("disconnected") if ctx.user_id == "hoarder"]
    assert "buffer is full" in reasons[0]


async def test_async_service_sdk(server: Server, clients: list[Client]) -> None:
    """The app's broadcaster uses the aio service client (aiohttp transport): same calls, same codes."""
    from azure.messaging.webpubsubservice.aio import WebPubSubServiceClient as AioServiceClient

    async with AioServiceClient.from_connection_string(server.cs, hub=HUB) as svc:
        token = await svc.get_client_access_token(user_id="aio", minutes_to_expire=5)
        c = Client(token["url"])
        clients.append(c)
        await asyncio.to_thread(c.open)
        await svc.add_connection_to_group("aio-g", c.connection_id)
        assert await svc.group_exists("aio-g")
        await svc.send_to_group("aio-g", {"k": "v"}, content_type="application/json")
        await svc.send_to_connection(c.connection_id, {"direct": 1}, content_type="application/json")
        await asyncio.to_thread(wait_for, lambda: c.group and c.server_msgs, 5.0, "aio sends")
        await svc.remove_connection_from_group("aio-g", c.connection_id)
        assert not await svc.group_exists("aio-g")
    assert c.group[0].data == {"k": "v"} and c.server_msgs[0].data == {"direct": 1}


def test_simple_client_is_dropped_when_its_message_handler_fails(server: Server) -> None:
    tok = token_for(server, user_id="simple-fail")
    original = server.sink.user_event

    async def failing(hub: str, event: str, context: ConnectionContext, data: Any, data_type: str) -> UserEventResult:
        if data == "fail":
            return UserEventResult(ok=False, error_code="userError", error_message="no thanks")
        return await original(hub, event, context, data, data_type)

    async def run() -> int:
        server.sink.user_event = failing  # type: ignore[method-assign]
        try:
            async with websockets.connect(ws_url(server, tok)) as ws:
                await ws.send("fail")
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 3)
                return ws.close_code or 0
        finally:
            server.sink.user_event = original  # type: ignore[method-assign]

    assert server.call(run(), timeout=10) == 1008


def test_shutdown_closes_sockets_going_away() -> None:
    own = Server()
    tok = token_for(own, user_id="bye")

    async def connect() -> Any:
        ws = await websockets.connect(ws_url(own, tok), subprotocols=[RELIABLE_SUB])
        await _recv_json(ws)
        return ws

    ws = own.call(connect())
    assert own.runner is not None
    own.call(own.runner.cleanup())  # on_shutdown -> Gateway.shutdown()
    own.runner = None

    async def closed_code() -> int:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code or 0

    try:
        assert own.call(closed_code()) == 1001
    finally:
        own.stop()
