"""The twin end to end with the official SDK clients: rooms, chat, groups, isolation, bad input.

Everything here runs the registered functions through the twin host, against a real Azurite.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from azure.messaging.webpubsubclient.models import SendMessageError, WebPubSubDataType
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from babelroom.twin.wpsauth import parse_connection_string


def test_create_and_join_give_a_signed_time_bound_url(stack: Any) -> None:
    stack.room(name="Standup", validForMinutes=30)
    room = list(stack.rooms.values())[-1]
    assert room["name"] == "Standup"
    ticket = stack.join(room["roomId"], "Ana", "es-MX", "speaker")
    assert ticket["userId"].startswith(room["roomId"] + ".") and ticket["group"] == f"{room['roomId']}.es"
    assert ticket["url"].startswith(stack.url.replace("http", "ws") + "/client/hubs/rooms?access_token=")
    key = parse_connection_string(stack.settings["WebPubSubConnectionString"]).access_key
    token = ticket["url"].split("access_token=")[1]
    claims = jwt.decode(token, key, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == ticket["userId"] and "role" not in claims  # no group roles for clients
    assert claims["exp"] <= datetime.fromisoformat(room["validUntil"]).timestamp()  # never outlives the room


@pytest.mark.parametrize("body, status, code", [
    ({"displayName": "", "language": "es"}, 400, "bad_request"),
    ({"displayName": "Ana", "language": "not a language!"}, 400, "bad_request"),
    ({"displayName": "Ana", "language": "xx"}, 400, "bad_request"),  # well-formed, not supported
    ({"displayName": "Ana", "language": "es", "invite": 12}, 400, "bad_request"),
    ({"displayName": "Ana", "language": "es"}, 401, "unauthorized"),  # no invite
    ({"displayName": "Ana", "language": "es", "invite": "x" * 24}, 403, "forbidden"),
    ({"displayName": "Ana", "language": "es", "memberKey": "abcdefgh." + "x" * 24}, 403, "forbidden"),
    ([1, 2], 400, "bad_request"),
])
def test_join_rejects_bad_bodies(stack: Any, body: Any, status: int, code: str) -> None:
    room = stack.room()
    if isinstance(body, dict) and body.get("displayName") == "":
        body = body | {"invite": stack.rooms[room]["invites"]["speaker"]}
    got, out = stack.post(f"/api/rooms/{room}/join", body)
    assert (got, out["error"]["code"]) == (status, code), out


def test_unknown_and_expired_rooms(stack: Any, azurite: Any) -> None:
    status, out = stack.post("/api/rooms/nosuchroom/join", {"displayName": "A", "language": "en", "invite": "x" * 24})
    assert status == 404 and out["error"]["code"] == "not_found"
    # an expired room, written straight into the real storage the functions read
    from azure.storage.blob import BlobServiceClient

    past = datetime.now(UTC) - timedelta(hours=1)
    doc = {"room_id": "expired01", "name": "old", "created_at": (past - timedelta(hours=1)).isoformat(),
           "valid_until": past.isoformat(), "acs_room_id": None}
    BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        "rooms", "expired01.json").upload_blob(json.dumps(doc), overwrite=True)
    status, out = stack.post("/api/rooms/expired01/join", {"displayName": "A", "language": "en", "invite": "x" * 24})
    assert status == 410 and out["error"]["code"] == "gone"
    assert stack.get("/api/rooms/expired01")[0] == 410


def test_malformed_json_body_is_a_400(stack: Any) -> None:
    req = urllib.request.Request(stack.url + "/api/rooms", b"{nope", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400 and json.loads(e.value.read())["error"]["code"] == "bad_json"


def test_health_reports_each_dependency(stack: Any) -> None:
    status, out = stack.get("/api/health")
    assert status == 200
    assert set(out["dependencies"]) == {"storage", "webpubsub", "translator", "rooms"}
    assert out["dependencies"]["storage"]["ok"] and out["dependencies"]["webpubsub"]["ok"]


def test_chat_reaches_the_room_in_each_language_and_never_another_room(stack: Any, people: Any) -> None:
    room_a, room_b = stack.room(name="A"), stack.room(name="B")
    ana = people(room_a, "Ana", "es")
    bob = people(room_a, "Bob", "en", "listener")
    carl = people(room_b, "Carl", "en", "listener")
    bob.wait(lambda: len(bob.present()) == 2)
    ana.client.send_event("chat", {"text": "Hola a todos"}, WebPubSubDataType.JSON)
    line = bob.wait(lambda: bob.of("chat"))[0]
    assert line["original"] == "Hola a todos" and line["language"] == "en" and line["sourceLanguage"] == "es"
    assert line["displayName"] == "Ana"
    assert line["translated"] is False or line["text"] != "Hola a todos"
    mine = ana.wait(lambda: ana.of("chat"))[0]
    assert mine["language"] == "es" and mine["text"] == "Hola a todos"
    time.sleep(0.5)
    assert not carl.of("chat") and carl.present() == {carl.ticket["userId"]}  # room B saw only its own presence


def test_service_client_sends_to_a_language_group_through_the_gateway(stack: Any, people: Any) -> None:
    room = stack.room()
    bob = people(room, "Bob", "en", "listener")
    pia = people(room, "Pia", "pt", "listener")
    svc = WebPubSubServiceClient.from_connection_string(stack.settings["WebPubSubConnectionString"], hub="rooms")
    svc.send_to_group(f"{room}.en", {"type": "notice", "text": "hello en"}, content_type="application/json")
    assert bob.wait(lambda: bob.of("notice"))[0]["text"] == "hello en"
    assert svc.group_exists(f"{room}.pt")
    time.sleep(0.3)
    assert not pia.of("notice")


def _raw(stack: Any, ticket: dict[str, Any]) -> Any:
    return connect(ticket["url"], subprotocols=["json.webpubsub.azure.v1"], open_timeout=10)


def _until(ws: Any, pred: Callable[[dict[str, Any]], bool], timeout: float = 10,
           seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Next message matching pred; `seen` keeps what was read on the way (and is searched first)."""
    seen = [] if seen is None else seen
    for msg in seen:
        if pred(msg):
            return msg
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        seen.append(msg)
        if pred(msg):
            return msg
    raise AssertionError("no such message")


@pytest.mark.parametrize("event, data, code", [
    ("audio", {"turn": "t", "seq": 0, "rate": 48000, "pcm": base64.b64encode(b"\0\0" * 160).decode()}, "bad_rate"),
    ("audio", {"turn": "t", "seq": 0, "pcm": base64.b64encode(b"\0" * 20_000).decode()}, "frame_too_large"),
    ("audio", {"turn": "t", "seq": -1, "pcm": ""}, "bad_event"),
    ("launch", {"x": 1}, "No event handler"),  # the extension has no function for it: a 404 upstream
    ("chat", "not an object", "bad_event"),
])
def test_bad_events_get_a_clear_error_and_harm_nobody(stack: Any, people: Any, event: str, data: Any,
                                                      code: str) -> None:
    room = stack.room()
    bob = people(room, "Bob", "en", "listener")
    with _raw(stack, stack.join(room, "Eve", "es", "speaker")) as ws:
        _until(ws, lambda m: m.get("event") == "connected")
        ws.send(json.dumps({"type": "event", "event": event, "dataType": "json", "data": data, "ackId": 1}))
        seen: list[dict[str, Any]] = []
        ack = _until(ws, lambda m: m.get("type") == "ack", seen=seen)
        assert ack["success"] is False and code in json.dumps(ack["error"])
        if event != "launch":  # an unknown event never reaches a function, so only the ack says why
            err = _until(ws, lambda m: m.get("type") == "message" and m["data"].get("type") == "error", seen=seen)
            assert err["data"]["code"] == code and err["data"]["event"] == event
        # the socket still works, and the room still works for everyone else
        ws.send(json.dumps({"type": "event", "event": "chat", "dataType": "json", "data": {"text": "still here"},
                            "ackId": 2}))
        assert _until(ws, lambda m: m.get("type") == "ack")["success"] is True
    assert bob.wait(lambda: [c for c in bob.of("chat") if c["original"] == "still here"])


def test_malformed_frame_json_is_refused_without_touching_others(stack: Any, people: Any) -> None:
    room = stack.room()
    bob = people(room, "Bob", "en", "listener")
    with _raw(stack, stack.join(room, "Eve", "es", "speaker")) as ws:
        _until(ws, lambda m: m.get("event") == "connected")
        ws.send('{"type": "event", "event": "chat", "dataType": "json", "data": {"text": ')
        with pytest.raises(ConnectionClosed) as closed:  # the service closes a socket sending an invalid frame
            _until(ws, lambda m: False, timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    ana = people(room, "Ana", "es")
    ana.client.send_event("chat", {"text": "seguimos"}, WebPubSubDataType.JSON)
    assert bob.wait(lambda: [c for c in bob.of("chat") if c["original"] == "seguimos"])


def test_listeners_cannot_speak(stack: Any, people: Any) -> None:
    bob = people(stack.room(), "Bob", "en", "listener")
    with pytest.raises(SendMessageError):
        bob.client.send_event("turn.start", {"turn": "t1"}, WebPubSubDataType.JSON)
    assert bob.wait(lambda: bob.of("error"))[0]["code"] == "forbidden"


def test_wrong_key_expired_and_non_member_tokens_are_refused(stack: Any) -> None:
    room = stack.room()
    ticket = stack.join(room, "Ana", "es")
    cs = parse_connection_string(stack.settings["WebPubSubConnectionString"])
    aud = f"{stack.url}/client/hubs/rooms"
    base = ticket["url"].split("?")[0]

    def token(key: str, **claims: Any) -> str:
        now = int(time.time())
        return jwt.encode({"aud": aud, "iat": now, "exp": now + 600, **claims}, key, algorithm="HS256")

    bad = [
        token("x" * 40, sub=ticket["userId"]),  # signed with the wrong key
        token(cs.access_key, sub=ticket["userId"], exp=int(time.time()) - 10),  # expired
        token(cs.access_key, sub=f"{room}.notamember"),  # valid token, not a member of this room
        token(cs.access_key, sub=f"otherroom1.{ticket['userId'].split('.')[1]}"),  # member id moved to another room
    ]
    for t in bad:
        with pytest.raises(InvalidStatus) as e:
            connect(f"{base}?access_token={t}", subprotocols=["json.webpubsub.azure.v1"], open_timeout=10)
        assert e.value.response.status_code in (401, 403)


# --- invites, keys, host actions (issue 11, security) ------------------------------------------


def _closed(ws: Any, timeout: float = 10) -> Any:
    """Read until the service closes the socket; returns the close frame it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        _until(ws, lambda m: False, timeout=timeout)
    return closed.value.rcvd


def test_create_returns_separate_invites_and_a_host_key_stored_only_hashed(stack: Any, azurite: Any) -> None:
    status, out = stack.post("/api/rooms", {"name": "Secret"})
    assert status == 201 and set(out) >= {"roomId", "name", "validUntil", "hostKey", "invites"}
    secrets_ = [out["hostKey"], out["invites"]["speaker"], out["invites"]["listener"]]
    assert len(set(secrets_)) == 3
    assert all(len(base64.urlsafe_b64decode(s + "==")) >= 16 for s in secrets_)  # >= 128 bits each
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        "rooms", f"{out['roomId']}.json").download_blob().readall().decode()
    assert not any(s in blob for s in secrets_)  # a leaked blob lets nobody in


def test_role_comes_from_the_invite_not_from_the_body(stack: Any) -> None:
    room = stack.room()
    listener_invite = stack.rooms[room]["invites"]["listener"]
    status, out = stack.post(f"/api/rooms/{room}/join",
                             {"displayName": "Bob", "language": "en", "role": "speaker", "invite": listener_invite})
    assert status == 200 and out["role"] == "listener"
    assert set(out) >= {"url", "userId", "memberKey", "role", "roomId"}
    other = stack.room()  # an invite opens its own room only
    status, out = stack.post(f"/api/rooms/{other}/join",
                             {"displayName": "Bob", "language": "en", "invite": listener_invite})
    assert status == 403 and out["error"]["code"] == "forbidden"


def test_a_member_key_rejoins_as_the_same_member(stack: Any) -> None:
    room = stack.room()
    first = stack.join(room, "Ana", "es", "listener")
    status, again = stack.post(f"/api/rooms/{room}/join",
                               {"displayName": "Ana B", "language": "es", "memberKey": first["memberKey"]})
    assert status == 200 and again["userId"] == first["userId"] and again["role"] == "listener"
    assert again["displayName"] == "Ana B"


def test_reading_a_room_needs_the_host_key_or_a_member_key(stack: Any) -> None:
    room = stack.room(name="Private")
    ticket = stack.join(room, "Ana", "es")
    assert stack.get(f"/api/rooms/{room}")[0] == 401
    status, out = stack.get(f"/api/rooms/{room}", {"Authorization": "Bearer " + "x" * 24})
    assert status == 403 and out["error"]["code"] == "forbidden"
    invite = stack.rooms[room]["invites"]["speaker"]
    status, out = stack.get(f"/api/rooms/{room}", {"Authorization": f"Bearer {invite}"})
    assert status == 403  # an invite lets you join, not look inside
    status, out = stack.get(f"/api/rooms/{room}", {"Authorization": "Bearer " + stack.rooms[room]["hostKey"]})
    assert status == 200 and out["name"] == "Private" and out["you"] == {"role": "host"}
    status, out = stack.get(f"/api/rooms/{room}", {"Authorization": f"Bearer {ticket['memberKey']}"})
    assert status == 200 and out["you"]["userId"] == ticket["userId"]


def test_host_removes_a_member_whose_sockets_close_and_who_cannot_reconnect(stack: Any) -> None:
    room = stack.room()
    host = {"Authorization": "Bearer " + stack.rooms[room]["hostKey"]}
    eve = stack.join(room, "Eve", "es")
    ana = stack.join(room, "Ana", "en")
    with _raw(stack, eve) as ws, _raw(stack, ana) as ana_ws:
        _until(ws, lambda m: m.get("event") == "connected")
        _until(ana_ws, lambda m: m.get("event") == "connected")
        path = f"/api/rooms/{room}/members/{eve['userId']}"
        assert stack.request("DELETE", path)[0] == 401
        member = {"Authorization": f"Bearer {ana['memberKey']}"}
        assert stack.request("DELETE", path, headers=member)[0] == 403  # members cannot remove others
        status, out = stack.request("DELETE", path, headers=host)
        assert status == 200 and out == {"removed": eve["userId"]}
        _closed(ws)
        # Ana stays connected
        ana_ws.send(json.dumps({"type": "event", "event": "chat", "dataType": "json", "data": {"text": "hi"},
                                "ackId": 1}))
        assert _until(ana_ws, lambda m: m.get("type") == "ack")["success"] is True
    with pytest.raises(InvalidStatus) as e:
        _raw(stack, eve)  # the same signed URL no longer gets in
    assert e.value.response.status_code in (401, 403)
    assert stack.request("DELETE", f"/api/rooms/{room}/members/{eve['userId']}", headers=host)[0] == 404


def test_host_closes_the_room(stack: Any) -> None:
    room = stack.room()
    ana = stack.join(room, "Ana", "en")
    with _raw(stack, ana) as ws:
        _until(ws, lambda m: m.get("event") == "connected")
        assert stack.post(f"/api/rooms/{room}/close", None)[0] == 401
        assert stack.post(f"/api/rooms/{room}/close", None, {"Authorization": f"Bearer {ana['memberKey']}"})[0] == 403
        status, out = stack.post(f"/api/rooms/{room}/close", None,
                                 {"Authorization": "Bearer " + stack.rooms[room]["hostKey"]})
        assert status == 200 and out["closed"] is True
        _closed(ws)
    status, out = stack.post(f"/api/rooms/{room}/join", {"displayName": "Late", "language": "en",
                                                         "invite": stack.rooms[room]["invites"]["speaker"]})
    assert status == 410 and out["error"]["code"] == "gone"
    with pytest.raises(InvalidStatus):
        _raw(stack, ana)


def test_the_room_timer_closes_connections_at_valid_until(stack: Any, azurite: Any) -> None:
    """The end_rooms timer (fired through the host's admin API instead of waiting for the minute)."""
    from azure.storage.blob import BlobServiceClient

    room = stack.room()
    ana = stack.join(room, "Ana", "en")
    rooms = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("rooms")
    with _raw(stack, ana) as ws:
        _until(ws, lambda m: m.get("event") == "connected")
        req = urllib.request.Request(stack.url + "/admin/functions/end_rooms", b"{}",
                                     {"Content-Type": "application/json"})
        assert urllib.request.urlopen(req).status == 202
        ws.send(json.dumps({"type": "event", "event": "chat", "dataType": "json", "data": {"text": "on"},
                            "ackId": 1}))
        assert _until(ws, lambda m: m.get("type") == "ack")["success"] is True  # not due yet: still open
        # make the room end now, as if its validUntil had come
        doc = json.loads(rooms.download_blob(f"{room}.json").readall())
        ended = datetime.now(UTC) - timedelta(seconds=1)
        doc["valid_until"] = ended.isoformat()
        rooms.upload_blob(f"{room}.json", json.dumps(doc), overwrite=True)
        due = f"ends/{int(ended.timestamp()):012d}.{room}"
        rooms.upload_blob(due, b"", overwrite=True)
        assert urllib.request.urlopen(req).status == 202
        _closed(ws)
    assert due not in {b.name for b in rooms.list_blobs(name_starts_with="ends/")}  # done once


def test_languages_are_capped_per_room(stack: Any) -> None:
    room = stack.room()
    for lang in ("en", "es", "pt", "fr"):
        stack.join(room, "P", lang, "listener")
    status, out = stack.post(f"/api/rooms/{room}/join", {"displayName": "Dora", "language": "de",
                                                         "invite": stack.rooms[room]["invites"]["listener"]})
    assert status == 409 and out["error"]["code"] == "room_full" and "4 languages" in out["error"]["message"]
    # hearing a language the room already has is fine
    assert stack.join(room, "Dora", "de", "listener", hear="en")["hear"] == "en"


def test_post_bodies_must_be_json_and_small(stack: Any) -> None:
    status, out = stack.request("POST", "/api/rooms", raw=b'{"name": "x"}', headers={"Content-Type": "text/plain"})
    assert status == 415 and out["error"]["code"] == "unsupported_media_type"
    status, out = stack.request("POST", "/api/rooms", raw=b'{"name": "' + b"x" * 20_000 + b'"}')
    assert status == 413 and out["error"]["code"] == "too_large"


def test_create_is_rate_limited_per_client_address(stack: Any) -> None:
    # The last X-Forwarded-For entry is the one Azure's front end appended; a client cannot pick it.
    me = {"X-Forwarded-For": "203.0.113.7:50123"}
    spoofed = [{"X-Forwarded-For": f"10.0.0.{i}, 203.0.113.7:5{i:04d}"} for i in range(10)]
    results = [stack.post("/api/rooms", {}, me)[0] for _ in range(5)]
    assert results == [201] * 5
    status, out = stack.request("POST", "/api/rooms", {}, spoofed[0])
    assert status == 429 and out["error"]["code"] == "rate_limited"
    assert all(stack.post("/api/rooms", {}, h)[0] == 429 for h in spoofed[1:3])
    assert stack.post("/api/rooms", {}, {"X-Forwarded-For": "203.0.113.8:50123"})[0] == 201


def test_rate_limit_answers_carry_retry_after(stack: Any) -> None:
    room = stack.room()
    invite = stack.rooms[room]["invites"]["listener"]
    body = {"displayName": "L", "language": "en", "invite": invite}
    req = urllib.request.Request(stack.url + f"/api/rooms/{room}/join", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.20"})
    statuses = []
    retry = message = None
    for _ in range(60):  # the bucket refills at 0.5/s while we go, so a few more may pass
        try:
            with urllib.request.urlopen(req) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
            retry = e.headers.get("Retry-After")
            message = json.loads(e.read())["error"]["message"]
            break
    assert statuses[:20] == [200] * 20 and statuses[-1] == 429  # 20 joins per address in a burst
    assert retry is not None and int(retry) >= 1 and "this address" in (message or "")


def test_health_is_cached_and_shows_no_exception_text(stack: Any) -> None:
    first = stack.get("/api/health")[1]
    assert all(set(c) == {"ok", "detail"} for c in first["dependencies"].values())
    assert all("Error:" not in c["detail"] for c in first["dependencies"].values())


def test_fuzzed_bodies_through_the_twin_never_get_a_5xx(stack: Any) -> None:
    """The HTTP half of issue 11's fuzz figure end to end (real Blob, real tokens); the bulk of the
    examples run at function level in tests/functions/test_http_api.py."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    room = stack.room()
    secrets_ = stack.rooms[room]
    values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=50),
                       st.sampled_from(["en", "es", "zz", "", secrets_["invites"]["listener"], secrets_["hostKey"]]))
    bodies = st.one_of(st.dictionaries(st.sampled_from(["displayName", "language", "hear", "invite", "memberKey",
                                                        "name", "validForMinutes"]), values, max_size=5),
                       st.lists(values, max_size=3), values)
    paths = st.sampled_from(["/api/rooms", f"/api/rooms/{room}/join", "/api/rooms/nosuchroom/join",
                             f"/api/rooms/{room}/close"])

    @settings(max_examples=120, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(path=paths, body=bodies, raw=st.booleans())
    def check(path: str, body: Any, raw: bool) -> None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "text/plain"} if raw else None
        status, out = stack.request("POST", path, raw=data, headers=headers)
        assert status < 500, (path, body, out)
        if status >= 400:
            assert out["error"]["code"] and out["error"]["message"], out

    check()
