"""The twin gateway against the official Web PubSub SDKs: client groups/events/acks and the REST data plane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.core.rest import HttpRequest
from azure.messaging.webpubsubclient.models import (
    SendMessageError,
    WebPubSubDataType,
    WebPubSubProtocolType,
)
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from wps_harness import (
    HUB,
    JOIN,
    KEY,
    RELIABLE_SUB,
    SEND,
    Client,
    Server,
    collect_clients,
    open_client,
    serve,
    wait_for,
)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serve()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    yield from collect_clients()


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


def test_gateway_survives_everything_above(server: Server, clients: list[Client]) -> None:
    c = open_client(server, clients, user_id="last")
    c.client.send_event("chat", "ok", WebPubSubDataType.TEXT)
    wait_for(lambda: c.server_msgs, what="still serving")


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


def test_sdk_acks_never_stall(server: Server, clients: list[Client]) -> None:
    """Guards the ack delay: SDK 1.1.0 loses acks that beat its cv.wait() and then stalls 5 s here."""
    c = open_client(server, clients, user_id="fast-acks", roles=[JOIN, SEND])
    t0 = time.monotonic()
    for i in range(10):
        c.client.join_group(f"fa{i}")
        c.client.send_to_group(f"fa{i}", i, WebPubSubDataType.JSON)
        c.client.send_event("silent", str(i), WebPubSubDataType.TEXT)
    assert time.monotonic() - t0 < 4.0


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
