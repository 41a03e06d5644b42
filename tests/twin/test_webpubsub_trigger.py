"""The strict twin: a webPubSubTrigger function's return value is encoded as the Python worker does
and accepted (or not) as the Web PubSub Functions extension does (babelroom/twin/webpubsub_trigger.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from babelroom.broadcaster import group_name
from babelroom.rooms import Member, RoomNotFound
from babelroom.twin import webpubsub_trigger as wt
from babelroom.twin.gateway import ConnectionContext, ConnectRequest
from babelroom.twin.host import FunctionHost


def through(request_type: str, value: Any, states: dict[str, Any] | None = None) -> wt.WebhookResponse:
    """worker → host → extension, for one return value."""
    return wt.extension_response(request_type, wt.host_object(wt.worker_return(value)), states)


# -- the worker's encoding -----------------------------------------------------------------------


def test_worker_encodes_str_bytes_dict_list_none_as_the_generic_binding_does() -> None:
    assert wt.worker_return('{"userId": "a"}') == wt.TypedData("string", '{"userId": "a"}')
    assert wt.worker_return(b"\x00\x01") == wt.TypedData("bytes", b"\x00\x01")
    assert wt.worker_return(bytearray(b"x")) == wt.TypedData("bytes", b"x")
    assert json.loads(wt.worker_return({"userId": "a"}).value) == {"userId": "a"}
    assert wt.worker_return({"userId": "a"}).kind == "json"
    assert wt.worker_return([1, 2]).kind == "json"
    assert wt.worker_return(None) is None
    assert wt.worker_return(True) == wt.TypedData("int", 1)  # the worker checks int before bool
    with pytest.raises(TypeError, match="unable to encode outgoing TypedData"):
        wt.worker_return(object())


def test_host_makes_a_jtoken_only_of_json() -> None:
    assert wt.host_object(wt.worker_return("{}")) == "{}"  # still a System.String
    assert wt.host_object(wt.worker_return({})) == wt.JToken({})
    assert wt.host_object(None) is None


# -- the extension's acceptance rules -----------------------------------------------------------


def test_connect_str_reply_is_an_empty_200_so_the_service_accepts_with_no_groups() -> None:
    reply = {"userId": "r.m", "groups": ["r.fr"]}
    res = through("connect", json.dumps(reply))
    assert (res.status, res.body) == (200, b"")
    got = wt.service_connect_result(res, token_user="token-user")
    assert got.ok and got.groups == [] and got.user_id == "token-user"


def test_connect_str_refusal_is_lost() -> None:
    res = through("connect", json.dumps({"code": "unauthorized", "errorMessage": "not a member"}))
    assert wt.service_connect_result(res, "u").ok


def test_connect_dict_reply_is_the_connect_response() -> None:
    res = through("connect", {"userId": "r.m", "groups": ["r.fr", "r.all"], "roles": ["x"]})
    assert res.status == 200 and res.content_type == "application/json"
    got = wt.service_connect_result(res, "token-user")
    assert (got.ok, got.user_id, got.groups, got.roles) == (True, "r.m", ["r.fr", "r.all"], ["x"])


@pytest.mark.parametrize(("code", "status", "service_code"), [
    ("unauthorized", 401, "unauthorized"), ("userError", 400, "userError"), ("serverError", 500, "serverError"),
    ("UNAUTHORIZED", 401, "unauthorized")])
def test_error_replies_map_to_status_codes(code: str, status: int, service_code: str) -> None:
    for request_type in ("connect", "user"):
        res = through(request_type, {"code": code, "errorMessage": "why"})
        assert (res.status, res.text) == (status, "why")
    got = wt.service_connect_result(through("connect", {"code": code, "errorMessage": "why"}), "u")
    assert (got.ok, got.error_code, got.error_message) == (False, service_code, "why")


def test_unknown_error_code_is_a_500_not_the_code() -> None:
    res = through("connect", {"code": "forbidden", "errorMessage": "why"})
    assert res.status == 500 and "WebPubSubStatusCode" in res.text


def test_success_code_is_not_an_error() -> None:
    res = through("connect", {"code": "success", "userId": "a"})
    assert res.status == 200 and json.loads(res.body)["userId"] == "a"


def test_user_event_empty_object_is_a_500() -> None:
    res = through("user", {})
    assert res.status == 500 and res.text == wt.NULL_REFERENCE
    got = wt.service_user_result(res)
    assert not got.ok and got.error_code == "serverError"


def test_user_event_none_is_a_bare_200_and_no_reply() -> None:
    res = through("user", None)
    assert (res.status, res.body) == (200, b"")
    got = wt.service_user_result(res)
    assert got.ok and got.data is None


def test_user_event_str_error_is_lost() -> None:
    res = through("user", json.dumps({"code": "userError", "errorMessage": "bad"}))
    assert (res.status, res.body) == (200, b"") and wt.service_user_result(res).ok


def test_user_event_data_reply() -> None:
    res = through("user", {"data": "ack", "dataType": "text"})
    assert (res.status, res.body, res.content_type) == (200, b"ack", "text/plain")
    got = wt.service_user_result(through("user", {"data": '{"a": 1}', "dataType": "json"}))
    assert got.data_type == "json" and json.loads(got.data) == {"a": 1}
    # no dataType: WebPubSubDataType's default member, Binary (UserEventResponse sets none)
    assert through("user", {"data": "x"}).content_type == "application/octet-stream"
    assert through("user", {"data": "x", "dataType": 2}).content_type == "text/plain"
    assert through("user", {"data": "x", "dataType": "xml"}).status == 500


def test_user_event_data_must_be_a_string() -> None:
    res = through("user", {"data": {"a": 1}, "dataType": "json"})
    assert res.status == 500 and "stringify" in res.text


def test_a_list_or_number_is_not_a_response() -> None:
    assert through("connect", [1]).status == 500  # a JToken that is not a JObject
    assert (through("connect", 7).status, through("connect", 7).body) == (200, b"")  # Invalid response type


def test_connected_and_disconnected_ignore_the_return_value() -> None:
    for event in ("connected", "disconnected"):
        assert (through(event, {"code": "serverError"}).status, through(event, {}).body) == (200, b"")


def test_states_are_merged_into_ce_connection_state() -> None:
    res = through("connect", {"userId": "a", "states": {"n": 2, "gone": None}}, {"k": "v", "gone": 1})
    assert wt.decode_states(res.headers["ce-connectionState"]) == {"k": "v", "n": 2}
    assert json.loads(base64.b64decode(res.headers["ce-connectionState"])) == {"k": "v", "n": 2}
    assert "ce-connectionState" not in through("connect", {"userId": "a"}).headers


# -- through the real handlers in functions/events.py -------------------------------------------


class FakeRooms:
    def __init__(self, member: Member | None) -> None:
        self.member = member

    async def member_for(self, user_id: str, fresh: bool = False) -> tuple[Any, Member]:
        if self.member is None or self.member.user_id != user_id:
            raise RoomNotFound(f"no member {user_id}")
        return object(), self.member


class FakeBroadcaster:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def to_connection(self, connection_id: str, message: Any) -> None:
        self.sent.append((connection_id, message))


@pytest.fixture
def app_host(monkeypatch: pytest.MonkeyPatch) -> tuple[FunctionHost, Member, FakeBroadcaster]:
    monkeypatch.setenv("WEBPUBSUB_HUB", "rooms")
    from functions import deps

    member = Member("room1", "m1", "Ana", "es", "fr", "speaker")  # type: ignore[arg-type]
    broadcaster = FakeBroadcaster()
    monkeypatch.setattr(deps, "rooms", lambda: FakeRooms(member))
    monkeypatch.setattr(deps, "broadcaster", lambda: broadcaster)
    return FunctionHost(), member, broadcaster


def _as_str(host: FunctionHost, name: str) -> None:
    """Make a registered handler return `json.dumps` of what it returns: the old, broken shape."""
    f = next(f for f in host.functions if f.name == name)
    real = f.fn

    async def dumps(**kwargs: Any) -> str:
        return json.dumps(await real(**kwargs))

    f.fn = dumps


def _connect(user_id: str) -> ConnectRequest:
    ctx = ConnectionContext("rooms", "conn1", user_id, "system", "connect")
    return ConnectRequest(ctx, claims={"sub": [user_id]}, query={}, subprotocols=[])


KEY = "Endpoint=http://127.0.0.1:7071;AccessKey=twin-test-key;Version=1.0;"


async def test_real_connect_handler_joins_the_language_group(app_host: Any) -> None:
    host, member, _ = app_host
    got = await wt.FunctionEventSink(host, KEY).connect("rooms", _connect(member.user_id))
    assert got.ok and got.user_id == member.user_id
    assert group_name(member.room_id, member.hear) in got.groups


async def test_real_connect_handler_returning_str_leaves_the_listener_in_no_group(app_host: Any) -> None:
    """Group messages (captions, audio) go to groups: a connection in none receives nothing."""
    host, member, _ = app_host
    _as_str(host, "on_connect")
    got = await wt.FunctionEventSink(host, KEY).connect("rooms", _connect(member.user_id))
    assert got.ok and got.groups == []


async def test_real_connect_refusal_survives_only_as_a_dict(app_host: Any) -> None:
    host, _, _ = app_host
    sink = wt.FunctionEventSink(host, KEY)
    refused = await sink.connect("rooms", _connect("room1.stranger"))
    assert not refused.ok and refused.error_code == "unauthorized"
    _as_str(host, "on_connect")
    assert (await sink.connect("rooms", _connect("room1.stranger"))).ok  # the str refusal is lost


async def test_real_user_event_error_survives_only_as_a_dict(app_host: Any) -> None:
    host, member, broadcaster = app_host
    sink = wt.FunctionEventSink(host, KEY)
    ctx = ConnectionContext("rooms", "conn1", member.user_id, "user", "chat")
    bad = await sink.user_event("rooms", "chat", ctx, {"text": 5}, "json")  # not a string: a protocol error
    assert not bad.ok and bad.error_code == "userError"
    assert broadcaster.sent and broadcaster.sent[0][0] == "conn1"
    _as_str(host, "on_chat")
    assert (await sink.user_event("rooms", "chat", ctx, {"text": 5}, "json")).ok  # lost


def test_web_pubsub_functions_return_through_the_trigger_not_a_return_binding() -> None:
    """The worker sends a generic trigger's return value as its implicit output and the extension's
    trigger handles it (TriggerHandlesReturnValue): a `$return` binding would take the value away."""
    meta = FunctionHost().function_json
    wps = {n: m for n, m in meta.items() if any(b["type"] == "webPubSubTrigger" for b in m["bindings"])}
    assert {"on_connect", "on_connected", "on_disconnected", "on_chat"} <= set(wps)
    for name, m in wps.items():
        assert not any(b["name"] == "$return" or b.get("direction", "").upper() == "OUT" for b in m["bindings"]), name
