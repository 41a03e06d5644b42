"""The twin end to end with the official SDK clients: rooms, chat, groups, isolation, bad input.

Everything here runs the registered functions through the twin host, against a real Azurite.
"""

from __future__ import annotations

import base64
import json
import time
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
    status, room = stack.post("/api/rooms", {"name": "Standup", "validForMinutes": 30})
    assert status == 201 and room["name"] == "Standup"
    ticket = stack.join(room["roomId"], "Ana", "es-MX", "speaker")
    assert ticket["userId"].startswith(room["roomId"] + ".") and ticket["group"] == f"{room['roomId']}.es"
    assert ticket["url"].startswith(stack.url.replace("http", "ws") + "/client/hubs/rooms?access_token=")
    key = parse_connection_string(stack.settings["WebPubSubConnectionString"]).access_key
    token = ticket["url"].split("access_token=")[1]
    claims = jwt.decode(token, key, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == ticket["userId"] and "role" not in claims  # no group roles for clients
    assert claims["exp"] <= datetime.fromisoformat(room["validUntil"]).timestamp() + 60


@pytest.mark.parametrize("body, code", [
    ({"displayName": "", "language": "es", "role": "speaker"}, "bad_request"),
    ({"displayName": "Ana", "language": "not a language!", "role": "speaker"}, "bad_request"),
    ({"displayName": "Ana", "language": "es", "role": "king"}, "bad_request"),
    ([1, 2], "bad_request"),
])
def test_join_rejects_bad_bodies(stack: Any, body: Any, code: str) -> None:
    status, out = stack.post(f"/api/rooms/{stack.room()}/join", body)
    assert status == 400 and out["error"]["code"] == code


def test_unknown_and_expired_rooms(stack: Any, azurite: Any) -> None:
    status, out = stack.post("/api/rooms/nosuchroom/join", {"displayName": "A", "language": "en", "role": "listener"})
    assert status == 404 and out["error"]["code"] == "not_found"
    # an expired room, written straight into the real storage the functions read
    from azure.storage.blob import BlobServiceClient

    past = datetime.now(UTC) - timedelta(hours=1)
    doc = {"room_id": "expired01", "name": "old", "created_at": (past - timedelta(hours=1)).isoformat(),
           "valid_until": past.isoformat(), "acs_room_id": None}
    BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        "rooms", "expired01.json").upload_blob(json.dumps(doc), overwrite=True)
    status, out = stack.post("/api/rooms/expired01/join", {"displayName": "A", "language": "en", "role": "listener"})
    assert status == 410 and out["error"]["code"] == "gone"
    assert stack.get("/api/rooms/expired01")[0] == 410


def test_malformed_json_body_is_a_400(stack: Any) -> None:
    import urllib.error
    import urllib.request

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
