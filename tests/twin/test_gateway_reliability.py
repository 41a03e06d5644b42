"""Reliability: recovery and replay, sequence acks, slow consumers, buffer limits, shutdown."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import websockets
from wps_harness import (
    HUB,
    JOIN,
    JSON_SUB,
    RELIABLE_SUB,
    SEND,
    Client,
    Server,
    collect_clients,
    open_client,
    recv_json,
    serve,
    token_for,
    wait_for,
    ws_url,
)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serve()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    yield from collect_clients()


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
                await recv_json(fast)
                t0 = time.monotonic()
                svc = server.service()
                for _ in range(250):
                    await asyncio.to_thread(svc.send_to_group, "flood", payload, content_type="text/plain")
                    await recv_json(fast)
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


def test_shutdown_closes_sockets_going_away() -> None:
    own = Server()
    tok = token_for(own, user_id="bye")

    async def connect() -> Any:
        ws = await websockets.connect(ws_url(own, tok), subprotocols=[RELIABLE_SUB])
        await recv_json(ws)
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


def test_resend_of_an_in_flight_event_waits_for_the_first_call(server: Server) -> None:
    """Issue 11: a chat resent during recovery ran twice. The resend now waits for the first call."""
    tok = token_for(server, user_id="resender")
    frame = json.dumps({"type": "event", "event": "gate", "dataType": "text", "data": "only once", "ackId": 7})

    async def run() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http:
            ws = await websockets.connect(ws_url(server, tok), subprotocols=[RELIABLE_SUB])
            hello = await recv_json(ws)
            cid, rtok = hello["connectionId"], hello["reconnectionToken"]
            await ws.send(frame)
            await asyncio.to_thread(wait_for, lambda: server.connection(cid).in_flight, 5.0, "event in flight")
            ws.transport.abort()  # the network drops while the handler runs (no close handshake)
            again = await http.ws_connect(
                ws_url(server, tok, awps_connection_id=cid, awps_reconnection_token=rtok), protocols=(RELIABLE_SUB,)
            )
            await again.send_str(frame)  # the SDK resends what was not acked, same ackId
            await asyncio.to_thread(
                wait_for, lambda: server.connection(cid).in_flight[7].waiters == 1, 5.0, "resend waiting"
            )
            server.open_gate()
            got: list[dict[str, Any]] = []
            while sum(1 for m in got if m["type"] == "ack") < 2:
                got.append(await asyncio.wait_for(again.receive_json(), 5))
            await again.close()
            return got

    got = server.call(run(), timeout=30)
    calls = [e for e in server.sink.of("event") if e[0] == "gate" and e[1].user_id == "resender"]
    assert len(calls) == 1, "the handler ran once"
    acks = [m for m in got if m["type"] == "ack"]
    assert [a["ackId"] for a in acks] == [7, 7]
    assert acks[0]["success"] is True
    assert acks[1]["success"] is False and acks[1]["error"]["name"] == "Duplicate", "SDKs count Duplicate as success"
    replies = [m for m in got if m["type"] == "message"]
    assert len(replies) == 1 and replies[0]["data"]["data"] == "only once"


def test_resend_of_a_processed_send_to_group_is_not_delivered_twice(server: Server) -> None:
    tok = token_for(server, user_id="group-resender", roles=[JOIN, SEND], groups=["once-g"])
    frame = json.dumps({"type": "sendToGroup", "group": "once-g", "dataType": "text", "data": "hi", "ackId": 3})

    async def run() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(ws_url(server, tok), protocols=(RELIABLE_SUB,))
            hello = await ws.receive_json()
            await ws.send_str(frame)
            await ws.send_str(frame)
            await ws.send_str(json.dumps({"type": "ping"}))
            got: list[dict[str, Any]] = []
            while not got or got[-1]["type"] != "pong":
                got.append(await asyncio.wait_for(ws.receive_json(), 5))
            while sum(1 for m in got if m["type"] == "ack") < 2:
                got.append(await asyncio.wait_for(ws.receive_json(), 5))
            assert hello["userId"] == "group-resender"
            await ws.close()
            return got

    got = server.call(run(), timeout=20)
    assert [m["data"] for m in got if m["type"] == "message"] == ["hi"]
    acks = [m for m in got if m["type"] == "ack"]
    assert acks[0]["success"] is True and acks[1]["error"]["name"] == "Duplicate"


def test_recovery_refuses_an_expired_access_token(server: Server) -> None:
    """Issue 11: reliable recovery re-checks the token's expiry (1008, the session ends)."""
    tok = token_for(server, user_id="expiring")

    async def run() -> tuple[int, int]:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(ws_url(server, tok), protocols=(RELIABLE_SUB,))
            hello = await ws.receive_json()
            cid, rtok = hello["connectionId"], hello["reconnectionToken"]
            await ws.close(code=4000)
            recover = ws_url(server, tok, awps_connection_id=cid, awps_reconnection_token=rtok)
            # First a recovery while the token is valid: it works.
            ok = await http.ws_connect(recover, protocols=(RELIABLE_SUB,))
            await ok.send_str(json.dumps({"type": "ping"}))
            pong = await asyncio.wait_for(ok.receive_json(), 5)
            assert pong == {"type": "pong"}
            await ok.close(code=4000)
            # The token's exp passes while the socket is away (moved into the past, not waited for).
            conn = server.connection(cid)
            assert conn.token_expires is not None and conn.token_expires > time.time()
            conn.token_expires = time.time() - 3600
            late = await http.ws_connect(recover, protocols=(RELIABLE_SUB,))
            await late.receive()
            return late.close_code or 0, 1 if cid in server.gateway.connection_ids(HUB) else 0

    code, still_there = server.call(run(), timeout=20)
    assert code == 1008 and still_there == 0
    wait_for(
        lambda: [r for ctx, r in server.sink.of("disconnected") if ctx.user_id == "expiring"],
        what="disconnected after the refused recovery",
    )
    reasons = [r for ctx, r in server.sink.of("disconnected") if ctx.user_id == "expiring"]
    assert "expired" in reasons[0]
