"""`/runtime/webhooks/webpubsub` of the twin host, driven by hand-built CloudEvents requests as the
Web PubSub service sends them (abuse protection, ce-* headers, ce-signature), against a small
function app registered with the same `generic_trigger(type="webPubSubTrigger")` as ours."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from babelroom.twin.host import FunctionHost
from babelroom.twin.webpubsub_trigger import WEBHOOK_PATH, WebPubSubExtension

KEY = "webhook-test-access-key"
CONNECTION = f"Endpoint=http://service.example:8080;AccessKey={KEY};Version=1.0;"
ORIGIN = "service.example"

APP = '''
import json

import azure.functions as func

app = func.FunctionApp()
SEEN = []
REPLY = {}


def _record(event, request):
    SEEN.append((event, json.loads(request)))
    if REPLY.get(event) == "raise":
        raise RuntimeError("boom")
    return REPLY.get(event)


@app.generic_trigger(arg_name="request", type="webPubSubTrigger", hub="chat", eventName="connect", eventType="system")
def on_connect(request: str):
    return _record("connect", request)


@app.generic_trigger(arg_name="request", type="webPubSubTrigger", hub="chat", eventName="connected",
                     eventType="system")
def on_connected(request: str) -> None:
    _record("connected", request)


@app.generic_trigger(arg_name="request", type="webPubSubTrigger", hub="chat", eventName="disconnected",
                     eventType="system")
def on_disconnected(request: str) -> None:
    _record("disconnected", request)


@app.generic_trigger(arg_name="request", type="webPubSubTrigger", hub="chat", eventName="message", eventType="user")
async def on_message(request: str):
    return _record("message", request)
'''


@pytest.fixture(scope="module")
def app_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("wpsapp")
    (folder / "wps_webhook_app.py").write_text(textwrap.dedent(APP))
    sys.path.insert(0, str(folder))
    import wps_webhook_app  # type: ignore[import-not-found]

    yield wps_webhook_app
    sys.path.remove(str(folder))


@pytest_asyncio.fixture(loop_scope="session")
async def webhook(app_module: Any) -> AsyncIterator[tuple[str, Any]]:
    app_module.SEEN.clear()
    app_module.REPLY.clear()
    ext = WebPubSubExtension(FunctionHost("wps_webhook_app"), CONNECTION)
    app = web.Application()
    ext.add_routes(app)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url(WEBHOOK_PATH)), app_module
    await server.close()


def sign(connection_id: str, key: str = KEY) -> str:
    return "sha256=" + hmac.new(key.encode(), connection_id.encode(), hashlib.sha256).hexdigest()


def ce(event_type: str, event: str, connection_id: str = "c1", user_id: str | None = "alice",
       **extra: str) -> dict[str, str]:
    """The headers of one upstream event, per the Web PubSub CloudEvents HTTP protocol."""
    prefix = "azure.webpubsub.sys." if event_type == "system" else "azure.webpubsub.user."
    h = {"ce-specversion": "1.0", "ce-type": prefix + event, "ce-source": f"/hubs/chat/client/{connection_id}",
         "ce-id": "1", "ce-time": "2026-12-06T10:00:00Z", "ce-awpsversion": "1.0", "ce-hub": "chat",
         "ce-connectionId": connection_id, "ce-eventName": event, "ce-signature": sign(connection_id),
         "WebHook-Request-Origin": ORIGIN}
    if user_id:
        h["ce-userId"] = user_id
    return h | extra


async def call(url: str, headers: dict[str, str], body: Any = None, method: str = "POST",
               content_type: str = "application/json") -> tuple[int, bytes, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    async with aiohttp.ClientSession() as s, s.request(method, url, data=data,
                                                      headers=headers | {"Content-Type": content_type}) as r:
        return r.status, await r.read(), r.headers


async def test_abuse_protection_handshake(webhook: Any) -> None:
    url, _ = webhook
    async with aiohttp.ClientSession() as s:
        async with s.options(url, headers={"WebHook-Request-Origin": ORIGIN}) as r:
            assert r.status == 200 and r.headers["WebHook-Allowed-Origin"] == "*"
        async with s.options(url, headers={"WebHook-Request-Origin": "evil.example"}) as r:
            assert r.status == 400 and "WebHook-Allowed-Origin" not in r.headers


async def test_connect_request_and_response(webhook: Any) -> None:
    url, app = webhook
    app.REPLY["connect"] = {"userId": "alice", "groups": ["g1", "g2"], "roles": ["webpubsub.joinLeaveGroup"]}
    states = base64.b64encode(json.dumps({"seen": 1}).encode()).decode()
    body = {"claims": {"sub": ["alice"]}, "query": {"lang": ["fr"]}, "subprotocols": ["json.webpubsub.azure.v1"],
            "clientCertificates": [], "headers": {"Origin": ["http://x"]}}
    status, out, _ = await call(url, ce("system", "connect", **{"ce-connectionState": states}), body)
    assert status == 200
    assert json.loads(out)["groups"] == ["g1", "g2"] and json.loads(out)["userId"] == "alice"
    event, request = app.SEEN[-1]
    ctx = request["connectionContext"]
    assert (event, ctx["hub"], ctx["connectionId"], ctx["userId"], ctx["eventType"], ctx["eventName"]) == (
        "connect", "chat", "c1", "alice", "system", "connect")
    assert ctx["states"] == {"seen": 1}
    assert (request["claims"], request["query"], request["subprotocols"]) == (
        body["claims"], body["query"], body["subprotocols"])


async def test_connect_str_reply_is_an_empty_200(webhook: Any) -> None:
    url, app = webhook
    app.REPLY["connect"] = json.dumps({"userId": "alice", "groups": ["g1"]})
    status, out, _ = await call(url, ce("system", "connect"), {})
    assert (status, out) == (200, b"")


async def test_connect_refusal(webhook: Any) -> None:
    url, app = webhook
    app.REPLY["connect"] = {"code": "unauthorized", "errorMessage": "not a member"}
    status, out, _ = await call(url, ce("system", "connect"), {})
    assert (status, out) == (401, b"not a member")


async def test_signature_is_checked(webhook: Any) -> None:
    url, app = webhook
    assert (await call(url, ce("system", "connect", **{"ce-signature": sign("c1", "wrong-key")}), {}))[0] == 401
    assert (await call(url, ce("system", "connect", **{"ce-signature": sign("other-connection")}), {}))[0] == 401
    no_sig = {k: v for k, v in ce("system", "connect").items() if k != "ce-signature"}
    assert (await call(url, no_sig, {}))[0] == 401
    # the service sends one signature per access key (primary, secondary): any match is enough
    both = ce("system", "connect", **{"ce-signature": f"{sign('c1', 'old-key')},{sign('c1').upper()}"})
    assert (await call(url, both, {}))[0] == 200
    assert len(app.SEEN) == 1  # only the valid request reached the function


async def test_unknown_origin_is_unauthorized(webhook: Any) -> None:
    url, _ = webhook
    assert (await call(url, ce("system", "connect", **{"WebHook-Request-Origin": "evil.example"}), {}))[0] == 401


async def test_malformed_and_unknown_events(webhook: Any) -> None:
    url, app = webhook
    missing = {k: v for k, v in ce("system", "connect").items() if k != "ce-hub"}
    assert (await call(url, missing, {}))[0] == 400
    assert (await call(url, ce("user", "nosuchevent"), {}))[0] == 404
    assert (await call(url, ce("system", "connect"), {}, method="PUT"))[0] == 400
    bad_state = ce("system", "connect", **{"ce-connectionState": "%%%"})
    assert (await call(url, bad_state, {}))[0] == 400
    assert app.SEEN == []


async def test_user_event_data_and_reply(webhook: Any) -> None:
    url, app = webhook
    app.REPLY["message"] = {"data": "echo", "dataType": "text", "states": {"n": 1}}
    status, out, headers = await call(url, ce("user", "message"), b"hello", content_type="text/plain")
    assert (status, out) == (200, b"echo") and headers["Content-Type"].startswith("text/plain")
    assert json.loads(base64.b64decode(headers["ce-connectionState"])) == {"n": 1}
    _, request = app.SEEN[-1]
    assert (request["data"], request["dataType"]) == ("hello", "text")
    assert request["connectionContext"]["eventType"] == "user"
    await call(url, ce("user", "message"), {"a": 1})
    assert (json.loads(app.SEEN[-1][1]["data"]), app.SEEN[-1][1]["dataType"]) == ({"a": 1}, "json")


async def test_user_event_no_reply_empty_object_and_bad_content_type(webhook: Any) -> None:
    url, app = webhook
    app.REPLY["message"] = None
    assert (await call(url, ce("user", "message"), {"a": 1}))[:2] == (200, b"")
    app.REPLY["message"] = {}
    status, out, _ = await call(url, ce("user", "message"), {"a": 1})
    assert status == 500 and b"Object reference" in out
    app.REPLY["message"] = {"code": "userError", "errorMessage": "bad input"}
    assert (await call(url, ce("user", "message"), {"a": 1}))[:2] == (400, b"bad input")
    assert (await call(url, ce("user", "message"), b"\x89PNG", content_type="image/png"))[0] == 400


async def test_connected_and_disconnected(webhook: Any) -> None:
    url, app = webhook
    assert (await call(url, ce("system", "connected"), {}))[:2] == (200, b"")
    assert (await call(url, ce("system", "disconnected"), {"reason": "closed by client"}))[:2] == (200, b"")
    assert app.SEEN[-1][1]["reason"] == "closed by client"
    assert [e for e, _ in app.SEEN] == ["connected", "disconnected"]


async def test_unhandled_exception_is_a_500_at_once(webhook: Any) -> None:
    """More lenient than Azure, on purpose: there the failed invocation never completes the
    extension's pending response and the service's webhook call waits until it times out; a test
    run waiting for that would only be slower, and the 500 still fails the connect or the ack."""
    url, app = webhook
    app.REPLY["connect"] = "raise"
    status, out, _ = await call(url, ce("system", "connect"), {})
    assert status == 500 and b"RuntimeError" in out
