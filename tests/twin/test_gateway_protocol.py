"""Wire protocol edges: handshake refusals, browser-like and simple clients, malformed frames."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import pytest
import websockets
from azure.messaging.webpubsubclient.models import (
    OpenClientError,
)
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from wps_harness import (
    JOIN,
    JSON_SUB,
    KEY,
    SEND,
    Client,
    Server,
    collect_clients,
    handshake_status,
    protocol_violation,
    recv_json,
    serve,
    token_for,
    ws_url,
)

from babelroom.twin.gateway import (
    ConnectionContext,
    UserEventResult,
)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serve()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    yield from collect_clients()


# ----------------------------------------------------------------- handshake refusals


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
    assert server.call(handshake_status(ws_url(server, good))) == 101
    assert server.call(handshake_status(ws_url(server, "not-a-jwt"))) == 401
    assert server.call(handshake_status(ws_url(server))) == 401
    assert server.call(handshake_status(ws_url(server, expired))) == 401
    assert server.call(handshake_status(ws_url(server, wrong_key))) == 401
    assert server.call(handshake_status(ws_url(server, other_hub["token"]))) == 401, "token for hub 'other'"
    assert server.call(handshake_status(ws_url(server, good, hub="1bad"))) == 400
    assert server.call(handshake_status(other_hub["url"].replace("/other?", "/OTHER?"))) == 101

    c = Client(ws_url(server, expired))
    with pytest.raises(OpenClientError):
        c.client.open()


def test_connect_handler_refusals_map_to_http_status(server: Server) -> None:
    tok = token_for(server, user_id="r")
    for code, status in [("unauthorized", 401), ("forbidden", 403), ("userError", 400), ("serverError", 500)]:
        assert server.call(handshake_status(ws_url(server, tok, refuse=code))) == status
    assert server.call(handshake_status(ws_url(server, tok, refuse="raise"))) == 500
    assert server.call(handshake_status(ws_url(server, tok, extraGroup="eg"))) == 101


# ----------------------------------------------------------------- raw (browser-like) clients


def test_browser_like_client_json_subprotocol(server: Server) -> None:
    tok = token_for(server, user_id="browser", roles=[JOIN, SEND])

    async def run() -> None:
        async with websockets.connect(ws_url(server, tok), subprotocols=[JSON_SUB]) as ws:
            assert ws.subprotocol == JSON_SUB
            hello = await recv_json(ws)
            assert hello["type"] == "system" and hello["event"] == "connected"
            assert hello["userId"] == "browser" and "reconnectionToken" not in hello
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}
            await ws.send(json.dumps({"type": "joinGroup", "group": "bg", "ackId": 1}))
            assert await recv_json(ws) == {"type": "ack", "ackId": 1, "success": True}
            await ws.send(json.dumps({"type": "joinGroup", "group": "bg", "ackId": 1}))
            dup = await recv_json(ws)
            assert dup["success"] is False and dup["error"]["name"] == "Duplicate"
            await ws.send(json.dumps({"type": "sendToGroup", "group": "bg", "dataType": "binary", "data": "AAH/"}))
            msg = await recv_json(ws)
            assert msg == {
                "type": "message",
                "from": "group",
                "group": "bg",
                "fromUserId": "browser",
                "dataType": "binary",
                "data": "AAH/",
            }
            await ws.send(json.dumps({"type": "event", "event": "chat", "dataType": "text", "data": "hi", "ackId": 2}))
            reply = await recv_json(ws)
            assert reply["from"] == "server" and reply["data"]["data"] == "hi" and "sequenceId" not in reply
            assert await recv_json(ws) == {"type": "ack", "ackId": 2, "success": True}
            # Bad frames that carry an ackId get a failed ack; the socket stays usable.
            await ws.send(json.dumps({"type": "whatever", "ackId": 3}))
            bad = await recv_json(ws)
            assert bad["ackId"] == 3 and bad["success"] is False and bad["error"]["name"] == "BadRequest"
            await ws.send(json.dumps({"type": "event", "event": "bad name!", "data": 1, "ackId": 4}))
            assert (await recv_json(ws))["error"]["name"] == "BadRequest"
            await ws.send(json.dumps({"type": "sendToGroup", "group": "bg", "dataType": "text", "data": 5, "ackId": 5}))
            assert (await recv_json(ws))["error"]["name"] == "BadRequest"
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}

    server.call(run(), timeout=20)


def test_malformed_json_closes_only_the_offender(server: Server) -> None:
    code, got, bystander = protocol_violation(server, "{not json")
    assert code == 1007
    assert got and got[-1]["type"] == "system" and got[-1]["event"] == "disconnected"
    assert bystander == 1


def test_unknown_frame_without_ack_closes_only_the_offender(server: Server) -> None:
    code, _got, bystander = protocol_violation(server, json.dumps({"type": "teleport"}))
    assert code == 1007 and bystander == 1


def test_oversize_frame_closes_only_the_offender(server: Server) -> None:
    code, _got, bystander = protocol_violation(server, "x" * ((1 << 20) + 10))
    assert code == 1009 and bystander == 1


def test_binary_frame_on_json_protocol(server: Server) -> None:
    code, _got, bystander = protocol_violation(server, b"\x00\x01")
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


def test_query_hub_endpoint_header_token_and_odd_names(server: Server) -> None:
    tok = token_for(server, user_id="odd", roles=[JOIN])
    group = "sala café/1 ?&#"

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        url = f"ws://127.0.0.1:{server.port}/client/?hub=Rooms"
        headers = {"Authorization": f"Bearer {tok}"}
        async with websockets.connect(url, subprotocols=[JSON_SUB], additional_headers=headers) as ws:
            hello = await recv_json(ws)
            await ws.send(json.dumps({"type": "joinGroup", "group": group, "ackId": 1}))
            ack = await recv_json(ws)
            svc = WebPubSubServiceClient.from_connection_string(server.cs, hub="ROOMS")
            await asyncio.to_thread(svc.send_to_group, group, {"ok": "ü"}, content_type="application/json")
            msg = await recv_json(ws)
            await ws.send('{"type":"sendToGroup","group":"x","dataType":"json","data":NaN,"ackId":2}')
            nan = await recv_json(ws)  # NaN is not JSON: the frame is invalid, like "{not json"
            assert (nan["type"], nan["event"]) == ("system", "disconnected")
            return hello, ack, msg

    hello, ack, msg = server.call(run(), timeout=20)
    assert hello["userId"] == "odd" and ack["success"] is True
    assert msg["group"] == group and msg["data"] == {"ok": "ü"}


def test_plain_http_get_on_client_endpoint_is_400(server: Server) -> None:
    async def run() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.get(ws_url(server, token_for(server)).replace("ws://", "http://")) as r:
                return r.status

    before = len(server.sink.of("connect"))
    assert server.call(run()) == 400
    assert len(server.sink.of("connect")) == before, "no connect event for a non-WebSocket request"


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
