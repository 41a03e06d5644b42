"""HttpUpstream: the gateway calling a webhook over the Web PubSub CloudEvents HTTP upstream protocol.

The webhook here is a small aiohttp server that answers like the Functions Web PubSub extension
(https://learn.microsoft.com/azure/azure-web-pubsub/reference-cloud-events): it answers the
abuse-protection OPTIONS, checks ``ce-signature`` against the access key itself (independently of
the gateway's code) and records every request, so the test can check what went over the wire.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import web
from wps_harness import HUB, JOIN, JSON_SUB, KEY, SEND, Server, handshake_status, recv_json, token_for, ws_url

from babelroom.twin.gateway import HttpUpstream
from babelroom.twin.wpsauth import event_signature, verify_event_signature

SECOND_KEY = "second-access-key-0123456789abcdef0123456"


def b64json(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


class FakeExtension:
    """Records requests and answers like the Web PubSub Functions extension would."""

    def __init__(self, allowed_origin: str | None = "*") -> None:
        self.allowed_origin = allowed_origin
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/runtime/webhooks/webpubsub"
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/runtime/webhooks/webpubsub", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def posts(self) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for m, h, b in self.requests if m == "POST"]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.requests.append((request.method, headers, body))
        if request.method == "OPTIONS":
            if self.allowed_origin is None:
                return web.Response(status=200)
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": self.allowed_origin})
        cid = request.headers.get("ce-connectionId", "")
        expected = "sha256=" + hmac.new(KEY.encode(), cid.encode(), hashlib.sha256).hexdigest()
        if expected not in request.headers.get("ce-signature", "").split(","):
            return web.Response(status=401, text="signature mismatch")
        ce_type = request.headers["ce-type"]
        if ce_type == "azure.webpubsub.sys.connect":
            req = json.loads(body)
            if req["query"].get("refuse"):
                return web.Response(status=401, text="not on the list")
            answer = {"userId": "up-" + req["claims"]["sub"][0], "groups": ["up-g"], "roles": [JOIN, SEND]}
            return web.json_response(answer, headers={"ce-connectionState": b64json({"n": 1})})
        if ce_type in ("azure.webpubsub.sys.connected", "azure.webpubsub.sys.disconnected"):
            return web.Response(status=200)
        event = ce_type.removeprefix("azure.webpubsub.user.")
        state = request.headers.get("ce-connectionState")
        states = json.loads(base64.b64decode(state)) if state else None
        if event == "echo":
            new_state = {"n": (states or {}).get("n", 0) + 1}
            return web.json_response({"got": json.loads(body), "states": states},
                                     headers={"ce-connectionState": b64json(new_state)})
        if event == "text":
            return web.Response(text=body.decode().upper(), content_type="text/plain",
                                headers={"ce-connectionState": b64json({"t": 1})})
        if event == "bin":
            return web.Response(body=body[::-1], content_type="application/octet-stream")
        if event == "silent":
            return web.Response(status=204)
        if event == "bad":
            return web.Response(status=400, text="bad input")
        return web.Response(status=500, text="handler crashed")


@pytest.fixture
def rig() -> Iterator[tuple[Server, FakeExtension]]:
    fake = FakeExtension()
    server = Server(HttpUpstream(fake.url, [KEY, SECOND_KEY], origin="127.0.0.1"))
    server.call(fake.start())
    yield server, fake
    assert fake.runner is not None
    server.call(fake.runner.cleanup())
    server.stop()


def test_events_go_out_as_signed_cloudevents_and_answers_come_back(rig: tuple[Server, FakeExtension]) -> None:
    server, fake = rig
    tok = token_for(server, user_id="alice")

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        got: list[dict[str, Any]] = []
        async with websockets.connect(ws_url(server, tok, lang="es"), subprotocols=[JSON_SUB]) as ws:
            hello = await recv_json(ws)
            frames = [
                {"type": "event", "event": "echo", "dataType": "json", "data": {"hi": "ü"}, "ackId": 1},
                {"type": "event", "event": "echo", "dataType": "json", "data": [1], "ackId": 2},
                {"type": "event", "event": "text", "dataType": "text", "data": "hola", "ackId": 3},
                {"type": "event", "event": "bin", "dataType": "binary", "data": "AAEC", "ackId": 4},
                {"type": "event", "event": "silent", "dataType": "text", "data": "x", "ackId": 5},
                {"type": "event", "event": "bad", "dataType": "text", "data": "x", "ackId": 6},
                {"type": "event", "event": "crash", "dataType": "text", "data": "x", "ackId": 7},
            ]
            for frame in frames:
                await ws.send(json.dumps(frame))
                while True:  # replies come before their ack
                    msg = await recv_json(ws)
                    got.append(msg)
                    if msg["type"] == "ack":
                        break
            in_group = await asyncio.to_thread(server.service().group_exists, "up-g")
        return hello, got, in_group

    hello, got, in_group = server.call(run(), timeout=20)
    cid = hello["connectionId"]
    assert hello["userId"] == "up-alice", "userId from the connect response"
    assert in_group, "groups from the connect response are joined"
    replies = [m for m in got if m["type"] == "message"]
    acks = {m["ackId"]: m for m in got if m["type"] == "ack"}
    assert replies[0]["data"] == {"got": {"hi": "ü"}, "states": {"n": 1}}, "connect's ce-connectionState applies"
    assert replies[1]["data"] == {"got": [1], "states": {"n": 2}}, "a user event's ce-connectionState applies"
    assert (replies[2]["dataType"], replies[2]["data"]) == ("text", "HOLA")
    assert (replies[3]["dataType"], base64.b64decode(replies[3]["data"])) == ("binary", b"\x02\x01\x00")
    assert len(replies) == 4, "204 means no reply"
    assert all(acks[i]["success"] for i in range(1, 6))
    assert acks[6]["error"] == {"name": "BadRequest", "message": "bad input"}
    assert acks[7]["error"]["name"] == "InternalServerError"

    # What went over the wire: one OPTIONS handshake first, then signed CloudEvents.
    server.call(_settle(fake, "azure.webpubsub.sys.disconnected"))
    methods = [m for m, _h, _b in fake.requests]
    assert methods[0] == "OPTIONS" and methods.count("OPTIONS") == 1
    assert fake.requests[0][1]["WebHook-Request-Origin"] == "127.0.0.1"
    posts = fake.posts()
    types = [h["ce-type"] for h, _ in posts]
    assert types[:2] == ["azure.webpubsub.sys.connect", "azure.webpubsub.sys.connected"]
    assert types[-1] == "azure.webpubsub.sys.disconnected"
    users = [(h, b) for h, b in posts if h["ce-type"].startswith("azure.webpubsub.user.")]
    assert [h["ce-eventName"] for h, _ in users] == ["echo", "echo", "text", "bin", "silent", "bad", "crash"]
    signature = ",".join(
        "sha256=" + hmac.new(k.encode(), cid.encode(), hashlib.sha256).hexdigest() for k in (KEY, SECOND_KEY)
    )
    for h, _ in posts:
        assert h["ce-specversion"] == "1.0"
        assert h["ce-source"] == f"/hubs/{HUB}/client/{cid}"
        assert (h["ce-connectionId"], h["ce-hub"], h["ce-signature"]) == (cid, HUB, signature)
        assert datetime.fromisoformat(h["ce-time"].replace("Z", "+00:00")).tzinfo is not None
        assert h["ce-type"].endswith("." + h["ce-eventName"])
    assert len({h["ce-id"] for h, _ in posts}) == len(posts), "ce-id is unique per event"
    connect_h, connect_b = posts[0]
    body = json.loads(connect_b)
    assert set(body) == {"claims", "query", "headers", "subprotocols", "clientCertificates"}
    assert body["claims"]["sub"] == ["alice"] and body["query"]["lang"] == ["es"]
    assert body["subprotocols"] == [JSON_SUB] and "ce-connectionState" not in connect_h
    assert connect_h["ce-userId"] == "alice" and users[0][0]["ce-userId"] == "up-alice"
    assert users[0][0]["ce-subprotocol"] == JSON_SUB
    assert [h["Content-Type"].split(";")[0] for h, _ in users[:4]] == [
        "application/json", "application/json", "text/plain", "application/octet-stream"]
    assert [b for _, b in users[:4]] == [b'{"hi": "\xc3\xbc"}', b"[1]", b"hola", b"\x00\x01\x02"]
    assert json.loads(base64.b64decode(users[2][0]["ce-connectionState"])) == {"n": 3}
    assert json.loads(base64.b64decode(users[3][0]["ce-connectionState"])) == {"t": 1}, "replaced, not merged"
    assert json.loads(posts[-1][1])["reason"]


async def _settle(fake: FakeExtension, ce_type: str) -> None:
    """Wait (bounded) until the fake got an event of ``ce_type``: unblocking events are fire-and-forget."""
    for _ in range(200):
        if any(h.get("ce-type") == ce_type for h, _ in fake.posts()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {ce_type} event reached the webhook")


def test_connect_refusal_status_reaches_the_client(rig: tuple[Server, FakeExtension]) -> None:
    server, fake = rig
    tok = token_for(server, user_id="mallory")
    assert server.call(handshake_status(ws_url(server, tok, refuse="1"))) == 401
    assert [h["ce-type"] for h, _ in fake.posts()] == ["azure.webpubsub.sys.connect"], "no connected/disconnected"


@pytest.mark.parametrize("allowed", [None, "evil.example.com"])
def test_webhook_that_does_not_allow_the_origin_gets_no_events(allowed: str | None) -> None:
    fake = FakeExtension(allowed_origin=allowed)
    server = Server(HttpUpstream(fake.url, [KEY], origin="127.0.0.1"))
    try:
        server.call(fake.start())
        tok = token_for(server, user_id="x")
        assert server.call(handshake_status(ws_url(server, tok))) == 500
        assert [m for m, _h, _b in fake.requests] == ["OPTIONS"], "nothing is delivered to an unvalidated webhook"
        fake.allowed_origin = "127.0.0.1"  # validation is retried, not cached as a failure
        assert server.call(handshake_status(ws_url(server, tok))) == 101
    finally:
        if fake.runner is not None:
            server.call(fake.runner.cleanup())
        server.stop()


def test_wrong_access_key_is_refused_by_the_webhook() -> None:
    fake = FakeExtension()
    server = Server(HttpUpstream(fake.url, ["not-the-key-0123456789abcdef0123456789"]))
    try:
        server.call(fake.start())
        assert server.call(handshake_status(ws_url(server, token_for(server, user_id="y")))) == 401
    finally:
        if fake.runner is not None:
            server.call(fake.runner.cleanup())
        server.stop()


def test_cli_gateway_calls_a_webhook_as_for_func_start() -> None:
    """`python -m babelroom.twin.gateway --upstream ... --access-key ...` is the local Web PubSub for `func start`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeExtension()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "babelroom.twin.gateway", "--port", str(port), "--hub", HUB,
         "--upstream", fake.url, "--access-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:  # the CLI prints the client URL, then "started"
            if line.startswith("client url: "):
                url = line.removeprefix("client url: ").strip()
            if line.startswith("started"):
                break
        assert url.startswith(f"ws://127.0.0.1:{port}/client/hubs/{HUB}?access_token=")

        async def run() -> tuple[dict[str, Any], dict[str, Any]]:
            for _ in range(100):  # "started" is printed just before the socket is bound
                try:
                    ws = await websockets.connect(url, subprotocols=[JSON_SUB])
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            async with ws:
                hello = await recv_json(ws)
                await ws.send(json.dumps({"type": "event", "event": "echo", "dataType": "json", "data": 1, "ackId": 1}))
                return hello, await recv_json(ws)

        hello, reply = asyncio.run(run())
        assert hello["userId"] == "up-manual"
        assert reply["data"] == {"got": 1, "states": {"n": 1}}
        origins = [h.get("WebHook-Request-Origin") for m, h, _ in fake.requests if m == "OPTIONS"]
        assert origins == ["127.0.0.1"], "the origin is the host of the gateway's endpoint"
    finally:
        proc.terminate()
        proc.wait(10)
        asyncio.run_coroutine_threadsafe(fake.runner.cleanup(), loop).result(10)  # type: ignore[union-attr]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_event_signature_helpers_match_an_independent_hmac() -> None:
    cid = "conn-1"
    primary = "sha256=" + hmac.new(KEY.encode(), cid.encode(), hashlib.sha256).hexdigest()
    header = event_signature([KEY, SECOND_KEY], cid)
    assert header.split(",")[0] == primary and len(header.split(",")) == 2
    assert verify_event_signature([SECOND_KEY], cid, header), "a handler holding only the secondary key accepts"
    assert verify_event_signature([KEY], cid, primary)
    assert not verify_event_signature([KEY], "conn-2", header), "bound to the connection id"
    assert not verify_event_signature(["other-key"], cid, header)
    assert not verify_event_signature([KEY], cid, None)
