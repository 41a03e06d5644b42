"""Fuzzing the gateway (issue 11: "10,000 fuzzed frames and HTTP bodies -> 0 crashes, 0 5xx, each a clear error").

Hypothesis (derandomized, fixed example counts) throws structured-then-mutated frames at the client
endpoint for each subprotocol (``json.webpubsub.azure.v1``, ``json.reliable.webpubsub.azure.v1``, simple)
and random methods/paths/headers/bodies at the REST data plane. Every frame and body is answered
with a clear error (a failed ack with a name and message, a ``disconnected`` message plus 1003/1007,
or a 4xx JSON ``{code, message}``), never a 1011, a 5xx or a logged exception, and a bystander
connection in the same hub keeps receiving group traffic throughout. Each test counts what it sent
and asserts the total, so the figure is measured, not assumed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import pytest
import websockets
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wps_harness import HUB, JSON_SUB, KEY, RELIABLE_SUB, Server, recv_json, token_for, ws_url

from babelroom.twin.gateway import EchoSink

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ACK_ERRORS = {"BadRequest", "Forbidden", "Duplicate"}  # the echo sink itself never fails
PROTOCOL_CLOSES = {1003, 1007}  # binary on a JSON protocol / invalid frame


class ErrorLog(logging.Handler):
    """Collects ERROR records of the gateway: a logged exception is a crash, even if it was caught."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Rig:
    """A gateway with an echo upstream, a bystander connection and the sockets being fuzzed."""

    def __init__(self) -> None:
        self.server = Server(EchoSink())
        self.server.gateway.ack_delay = 0  # raw clients need no SDK race workaround
        self.server.gateway.handshake_delay = 0
        self.errors = ErrorLog()
        logging.getLogger("babelroom.twin.gateway").addHandler(self.errors)
        self.bystander: Any = None
        self.bystander_cid = ""
        self.token: str | None = None
        self.reconnects = 0
        self.fuzzed: dict[str, Any] = {}
        self.sent = 0
        self.seen: set[int] = set()
        self.server.call(self._bystander())

    async def _bystander(self) -> None:
        tok = token_for(self.server, user_id="bystander", groups=["calm"])
        self.bystander = await websockets.connect(ws_url(self.server, tok), subprotocols=[JSON_SUB])
        self.bystander_cid = (await recv_json(self.bystander))["connectionId"]

    async def socket(self, protocol: str | None) -> Any:
        """The fuzzed socket for ``protocol``, reconnected after the gateway closed it."""
        ws = self.fuzzed.get(str(protocol))
        if ws is None or ws.close_code is not None:
            self.reconnects += 1
            if self.token is None:
                self.token = token_for(self.server, user_id="fuzzer", groups=["mark"],
                                       roles=["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"])
            tok = self.token
            ws = await websockets.connect(ws_url(self.server, tok), subprotocols=[protocol] if protocol else None,
                                          max_size=None)
            if protocol:
                hello = await recv_json(ws)
                assert hello["event"] == "connected"
            self.fuzzed[str(protocol)] = ws
        return ws

    async def bystander_ok(self) -> None:
        """The good connection in the same hub still gets group traffic and answers pings."""
        marker = f"still-here-{self.sent}"
        svc = self.server.service()
        await asyncio.to_thread(svc.send_to_group, "calm", marker, content_type="text/plain")
        msg = await recv_json(self.bystander, 5)
        assert msg["data"] == marker
        await self.bystander.send(json.dumps({"type": "ping"}))
        assert await recv_json(self.bystander, 5) == {"type": "pong"}

    def close(self) -> None:
        async def shut() -> None:
            for ws in [self.bystander, *self.fuzzed.values()]:
                if ws is not None:
                    await ws.close()

        self.server.call(shut())
        logging.getLogger("babelroom.twin.gateway").removeHandler(self.errors)
        self.server.stop()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


# ----------------------------------------------------------------- inputs
# Hypothesis draws one byte string per example (a draw costs ~15 ms on this shared 2-core machine, far
# more than a frame's round trip), and `Bytes` reads frames out of it the way a coverage fuzzer reads its
# input: selector bytes pick a shape, a field table entry or a mutation, the rest becomes payload.
# Shrinking still works on the bytes, and derandomize keeps every run identical.


class Bytes:
    """A cursor over fuzz input; reads past the end give zeros, so every input builds something."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def int(self, n: int) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value % n

    def chunk(self, most: int) -> bytes:
        size = self.int(most + 1)
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def text(self, most: int) -> str:
        return self.chunk(most).decode("utf-8", "replace")

    def pick(self, options: list[Any]) -> Any:
        return options[self.int(len(options))]

    def number(self) -> int | float:
        raw = self.chunk(8).ljust(8, b"\0")
        kind = self.int(3)
        if kind == 0:
            return int.from_bytes(raw, "little", signed=True)
        if kind == 1:
            return int.from_bytes(raw + raw[:1], "little")  # beyond uint64
        value = struct.unpack("<d", raw)[0]
        return 0.5 if math.isnan(value) or math.isinf(value) else value

    def json(self, depth: int = 2) -> Any:
        kind = self.int(7 if depth else 5)
        if kind == 0:
            return None
        if kind == 1:
            return bool(self.int(2))
        if kind == 2:
            return self.number()
        if kind in (3, 4):
            return self.text(16)
        if kind == 5:
            return [self.json(depth - 1) for _ in range(self.int(4))]
        return {self.text(6): self.json(depth - 1) for _ in range(self.int(4))}


TYPES = ["joinGroup", "leaveGroup", "sendToGroup", "event", "sequenceAck", "ping", "SENDTOGROUP", "teleport", ""]
FIELDS: list[tuple[str, list[Any]]] = [
    ("group", ["g", "calm-not", " ", "x" * 1025, ""]),
    ("event", ["chat", "bad name!", "a" * 200, ""]),
    ("dataType", ["json", "text", "binary", "JSON", "protobuf"]),
    ("data", ["AAH/", "not base64!", {"k": "v"}, ""]),
    ("noEcho", [True, False]),
    ("sequenceId", [0, 1, 1 << 64, -1]),
]


def client_frame(r: Bytes) -> str | bytes:
    """One frame: usually a well-formed message with odd values, sometimes mutated text or binary."""
    shape = r.int(20)
    if shape == 19:
        return r.chunk(64)
    if shape == 18:
        return r.text(64)
    msg: dict[str, Any] = {"type": r.pick(TYPES) if r.int(8) else r.json()}
    if r.int(10):  # mostly with a valid ackId, so errors come back as acks and the socket stays
        msg["ackId"] = r.int(50) if r.int(10) else r.json(0)
    for key, table in FIELDS:
        choice = r.int(4)
        if choice == 1:
            msg[key] = r.pick(table)
        elif choice == 2:
            msg[key] = r.json()
    text = json.dumps(msg)
    if shape == 17:  # byte-level mutation of a structured frame
        cut = r.int(len(text) + 1)
        text = text[:cut] + r.text(3) + text[cut + r.int(4):]
    return text


def client_frames(data: bytes, most: int = 40) -> list[str | bytes]:
    r = Bytes(data)
    out: list[str | bytes] = []
    while r.more() and len(out) < most:
        out.append(client_frame(r))
    return out


# ----------------------------------------------------------------- client endpoint

async def _exchange(rig: Rig, protocol: str, batch: list[str | bytes]) -> None:
    rig.errors.records.clear()  # a crash fails the example that caused it, so hypothesis can shrink it
    for frame in batch:
        ws = await rig.socket(protocol)
        await ws.send(frame)
        rig.sent += 1
        marker = f"m{rig.sent}"  # everything the frame caused arrives before the marker's echo
        try:
            await ws.send(json.dumps({"type": "sendToGroup", "group": "mark", "dataType": "text", "data": marker}))
        except websockets.ConnectionClosed:
            pass
        got: list[dict[str, Any]] = []
        try:
            while True:
                msg = await recv_json(ws, 5)
                got.append(msg)
                if msg.get("group") == "mark" and msg.get("data") == marker:
                    if "sequenceId" in msg:
                        rig.seen.add(msg["sequenceId"])
                    break
                if msg["type"] == "ack":
                    assert isinstance(msg["ackId"], int) and isinstance(msg["success"], bool)
                    if not msg["success"]:
                        assert msg["error"]["name"] in ACK_ERRORS, msg
                        assert isinstance(msg["error"]["message"], str) and msg["error"]["message"]
                if "sequenceId" in msg:
                    rig.seen.add(msg["sequenceId"])
        except websockets.ConnectionClosed:
            assert ws.close_code in PROTOCOL_CLOSES, (frame, ws.close_code, got)
            assert got and got[-1]["type"] == "system" and got[-1]["event"] == "disconnected", (frame, got)
            assert got[-1]["message"], "the close says why"
        if protocol == RELIABLE_SUB and rig.seen and ws.close_code is None:
            await ws.send(json.dumps({"type": "sequenceAck", "sequenceId": max(rig.seen)}))  # like the SDK
    assert not rig.errors.records, [r.getMessage() for r in rig.errors.records]


@pytest.mark.parametrize("protocol", [JSON_SUB, RELIABLE_SUB])
def test_fuzzed_frames_get_clear_errors_on_json_protocols(rig: Rig, protocol: str) -> None:
    start = rig.sent

    @settings(FUZZ, max_examples=100)
    @given(data=st.binary(min_size=1200, max_size=2400))
    def run(data: bytes) -> None:
        rig.server.call(_exchange(rig, protocol, client_frames(data)), timeout=60)

    run()
    rig.server.call(rig.bystander_ok())
    assert rig.sent - start >= 3000, rig.sent - start


def test_fuzzed_frames_from_simple_clients_each_get_an_answer(rig: Rig) -> None:
    """No subprotocol: every frame is the ``message`` event; the echo upstream answers each one."""
    start = rig.sent

    async def exchange(batch: list[str | bytes]) -> None:
        rig.errors.records.clear()
        ws = await rig.socket(None)
        for frame in batch:
            await ws.send(frame)
            rig.sent += 1
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["echo"] == "message"
            assert reply["data"] == (frame if isinstance(frame, str) else None)
        assert ws.close_code is None
        assert not rig.errors.records, [r.getMessage() for r in rig.errors.records]

    def frames_of(data: bytes) -> list[str | bytes]:
        r = Bytes(data)
        out: list[str | bytes] = []
        while r.more() and len(out) < 40:
            out.append(r.chunk(120) if r.int(2) else r.text(120))
        return out

    @settings(FUZZ, max_examples=50)
    @given(data=st.binary(min_size=1500, max_size=3000))
    def run(data: bytes) -> None:
        rig.server.call(exchange(frames_of(data)), timeout=60)

    run()
    rig.server.call(rig.bystander_ok())
    assert rig.sent - start >= 1500, rig.sent - start


# ----------------------------------------------------------------- REST data plane

ROUTE_WORDS = [":send", ":closeConnections", ":generateToken", "groups", "connections", "users", "permissions",
               "sendToGroup", "joinLeaveGroup", "calm", "g", ""]
CONTENT_TYPES = ["application/json", "text/plain", "application/octet-stream", "text/plain; charset=bogus",
                 "application/x+json", "", "image/png"]
QUERY_KEYS = ["excluded", "minutesToExpire", "userId", "role", "group", "targetName", "reason", "filter"]


def rest_call(r: Bytes, bystander: str) -> tuple[str, str, dict[str, str], bytes]:
    """One data-plane call: method, path-and-query, headers, body."""
    method = r.pick(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"])
    hub = r.pick([HUB, HUB, "ROOMS", "1bad", "x" * 200, ""]) if r.int(6) else r.text(8)
    segments = [r.pick(ROUTE_WORDS) if r.int(4) else r.text(12) for _ in range(r.int(6))]
    path = "/api/hubs/" + "/".join(urllib.parse.quote(s, safe=":") for s in [hub, *segments])
    query = [("api-version", "2024-12-01"), ("excluded", bystander)]  # a close-all spares the bystander
    for key in QUERY_KEYS:
        if r.int(5) == 0:
            query.append((key, r.text(10) if r.int(2) else str(r.number())))
    headers = {}
    if r.int(3):
        ctype = r.pick(CONTENT_TYPES) if r.int(4) else "".join(c for c in r.text(30) if " " <= c <= "~")
        headers["Content-Type"] = ctype
    kind = r.int(3)
    body = r.chunk(200) if kind == 0 else json.dumps(r.json()).encode() if kind == 1 else r.text(100).encode()
    return method, path + "?" + urllib.parse.urlencode(query), headers, body


def test_fuzzed_rest_calls_are_never_5xx(rig: Rig) -> None:
    base = f"http://127.0.0.1:{rig.server.port}"
    sent = 0

    async def exchange(data: bytes) -> None:
        nonlocal sent
        rig.errors.records.clear()
        r = Bytes(data)
        async with aiohttp.ClientSession() as http:
            for _ in range(40):
                if not r.more():
                    break
                method, target, headers, body = rest_call(r, rig.bystander_cid)
                url = base + target
                token = jwt.encode({"aud": url, "exp": int(time.time()) + 60}, KEY, algorithm="HS256")
                hdrs = {**headers, "Authorization": f"Bearer {token}"}
                async with http.request(method, yarl.URL(url, encoded=True), headers=hdrs, data=body) as resp:
                    sent += 1
                    text = await resp.read()
                    assert resp.status < 500, (method, target, headers, resp.status, text[:300])
                    if resp.status >= 400 and method != "HEAD":
                        err = json.loads(text)
                        assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"]
        assert not rig.errors.records, [rec.getMessage() for rec in rig.errors.records]

    @settings(FUZZ, max_examples=120)
    @given(data=st.binary(min_size=1500, max_size=3000))
    def run(data: bytes) -> None:
        rig.server.call(exchange(data), timeout=60)

    run()
    rig.server.call(rig.bystander_ok())
    assert sent >= 2500, sent
