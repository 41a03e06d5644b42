"""The HTTP functions as the host invokes them (the twin's FunctionHost: route matching, binding
values, the registered user functions), with the room service on in-memory fakes of its ports.

Function-level on purpose: per-room limits with an injected clock, ACS failing on demand, caps
reached without 50 real sockets, and thousands of fuzzed requests in seconds. The same routes run
end to end against Azurite and the gateway in tests/twin/test_rooms.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelroom.ratelimit import RateLimiter
from babelroom.rooms import Member, Room, RoomService
from babelroom.twin.host import FunctionHost, http_request
from functions import deps, http_api
from functions import web as web_fn


class MemoryStore:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.ends: dict[str, str] = {}

    async def save_room(self, room: Room) -> None:
        self.rooms[room.room_id] = room

    async def get_room(self, room_id: str) -> Room | None:
        return self.rooms.get(room_id)

    async def save_member(self, member: Member) -> None:
        self.members[(member.room_id, member.member_id)] = member

    async def get_member(self, room_id: str, member_id: str) -> Member | None:
        return self.members.get((room_id, member_id))

    async def roster(self, room_id: str) -> dict[str, str]:
        return {k: m.hear for (r, k), m in self.members.items() if r == room_id}

    async def delete_member(self, room_id: str, member_id: str) -> None:
        self.members.pop((room_id, member_id), None)

    async def schedule_end(self, room: Room) -> None:
        self.ends[f"ends/{int(room.valid_until.timestamp()):012d}.{room.room_id}"] = room.room_id

    async def due_rooms(self, now: datetime) -> list[tuple[str, str]]:
        return [(k, r) for k, r in sorted(self.ends.items()) if int(k[5:17]) <= now.timestamp()]

    async def ended(self, key: str) -> None:
        self.ends.pop(key, None)


class Tokens:
    def __init__(self) -> None:
        self.minutes: list[int] = []

    async def client_url(self, user_id: str, minutes: int) -> str:
        self.minutes.append(minutes)
        return f"wss://wps.example/client/hubs/rooms?access_token={user_id}"


class Connections:
    def __init__(self) -> None:
        self.closed: list[tuple[str, str]] = []

    async def close_user(self, user_id: str, reason: str) -> None:
        self.closed.append(("user", user_id))

    async def close_group(self, group: str, reason: str) -> None:
        self.closed.append(("group", group))


class Identity:
    """The membership authority port; `fail` makes it raise as an unreachable ACS would."""

    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.added: list[str] = []

    async def create_room(self, room: Room) -> str | None:
        if self.fail:
            raise self.fail
        return "acs-" + room.room_id

    async def add_member(self, room: Room, member: Member) -> dict[str, Any] | None:
        if self.fail:
            raise self.fail
        self.added.append(member.role)
        return {"userId": "8:acs:" + member.member_id}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def host() -> Iterator[FunctionHost]:
    """The host, its durable client pointed at a stub where no entity exists yet (GET room reads one)."""

    class NoEntities(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    sys.modules.pop("function_app", None)  # a fresh app: get_functions() cannot run twice on one
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoEntities)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield FunctionHost(durable_base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    sys.modules.pop("function_app", None)  # and leave a fresh one for the next module's host


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> RoomService:
    service = RoomService(MemoryStore(), Tokens(), Identity(), Connections())
    monkeypatch.setattr(deps, "rooms", lambda: service)
    clock = Clock()
    for name in ("CREATE_PER_ADDRESS", "JOIN_PER_ADDRESS", "JOIN_PER_ROOM"):
        old = getattr(http_api, name)
        monkeypatch.setattr(http_api, name, RateLimiter(old.rate, old.burst, clock))
    service.clock = clock  # type: ignore[attr-defined]
    return service


async def call(host: FunctionHost, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, Any, func.HttpResponse]:
    found = host.http(method, path)
    assert found is not None, path
    f, params = found
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    hdrs = {"content-type": "application/json"} if data else {}
    hdrs |= {k.lower(): v for k, v in (headers or {}).items()}
    res = await host.invoke_http(f, http_request(method, "http://h/" + path, hdrs, {}, params, data))
    payload = res.get_body()
    return res.status_code, json.loads(payload) if payload and res.mimetype == "application/json" else None, res


async def new_room(host: FunctionHost, **body: Any) -> dict[str, Any]:
    status, out, _ = await call(host, "POST", "api/rooms", body, {"X-Forwarded-For": "192.0.2.1"})
    assert status == 201, out
    return out


async def join(host: FunctionHost, room: dict[str, Any], role: str = "speaker", language: str = "en",
               address: str = "192.0.2.2", **extra: Any) -> tuple[int, Any]:
    body = {"displayName": "P", "language": language, "invite": room["invites"][role], **extra}
    status, out, _ = await call(host, "POST", f"api/rooms/{room['roomId']}/join", body, {"X-Forwarded-For": address})
    return status, out


# --- behaviour --------------------------------------------------------------------------------


async def test_join_registers_with_the_authority_and_issues_a_token_ending_with_the_room(
        host: FunctionHost, svc: RoomService) -> None:
    room = await new_room(host, validForMinutes=30)
    status, out = await join(host, room, "listener")
    assert status == 200 and out["role"] == "listener"
    assert svc.identity.added == ["listener"]  # type: ignore[attr-defined]
    assert svc.tokens.minutes == [29]  # type: ignore[attr-defined] # whole minutes, rounded down
    stored = await svc.store.get_member(room["roomId"], out["userId"].split(".")[1])
    assert stored is not None and stored.acs_user_id == "8:acs:" + stored.member_id
    assert out["memberKey"] not in json.dumps(stored.to_json())


async def test_an_acs_failure_is_a_503_with_retry_after_never_a_500(host: FunctionHost, svc: RoomService) -> None:
    room = await new_room(host)
    svc.identity.fail = ConnectionError("acs.example:443 unreachable")  # type: ignore[attr-defined]
    status, out, res = await call(host, "POST", f"api/rooms/{room['roomId']}/join",
                                  {"displayName": "A", "language": "en", "invite": room["invites"]["speaker"]})
    assert status == 503 and out["error"]["code"] == "unavailable" and res.headers["Retry-After"] == "5"
    assert "acs.example" not in json.dumps(out)
    assert await svc.store.roster(room["roomId"]) == {}  # nothing half-joined
    status, out, res = await call(host, "POST", "api/rooms", {})
    assert status == 503 and res.headers["Retry-After"] == "5"


async def test_members_per_room_are_capped(host: FunctionHost, svc: RoomService) -> None:
    svc.max_members = 3
    room = await new_room(host)
    assert [(await join(host, room, address=f"192.0.2.{i}"))[0] for i in range(3)] == [200] * 3
    status, out = await join(host, room, address="192.0.2.9")
    assert status == 409 and out["error"]["code"] == "room_full" and "3 members" in out["error"]["message"]


async def test_joins_are_rate_limited_per_room_whatever_the_address(host: FunctionHost, svc: RoomService) -> None:
    room = await new_room(host)
    statuses = [(await join(host, room, "listener", address=f"198.18.0.{i}"))[0] for i in range(31)]
    assert statuses == [200] * 30 + [429]
    svc.clock.now += 1.0  # type: ignore[attr-defined] # one token back per second
    assert (await join(host, room, "listener", address="198.18.1.1"))[0] == 200
    other = await new_room(host)
    assert (await join(host, other, "listener", address="198.18.1.2"))[0] == 200  # rooms are independent


async def test_the_timer_ends_due_rooms_once_and_closes_their_sockets(host: FunctionHost, svc: RoomService) -> None:
    room = await new_room(host, validForMinutes=5)
    status, out = await join(host, room)
    timer = next(f for f in host.functions if f.name == "end_rooms")
    await host.invoke(timer, None)
    assert svc.connections.closed == []  # type: ignore[attr-defined]
    stored = svc.store.rooms[room["roomId"]]  # type: ignore[attr-defined]
    svc.store.rooms[room["roomId"]] = Room.from_json(  # type: ignore[attr-defined]
        stored.to_json() | {"valid_until": stored.created_at.isoformat()})
    svc.store.ends = {f"ends/{int(stored.created_at.timestamp()):012d}.{room['roomId']}": room["roomId"]}  # type: ignore[attr-defined]
    await host.invoke(timer, None)
    assert svc.connections.closed == [("group", f"{room['roomId']}.all"), ("user", out["userId"])]  # type: ignore[attr-defined]
    await host.invoke(timer, None)
    assert len(svc.connections.closed) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("forwarded, expected", [
    ("203.0.113.5:41234", "203.0.113.5"),
    ("10.9.9.9, 203.0.113.5:41234", "203.0.113.5"),  # the client's own entry comes first and is ignored
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("2001:db8::2", "2001:db8::2"),
    ("", "unknown"),
])
def test_client_address_is_the_entry_azure_appended(forwarded: str, expected: str) -> None:
    req = func.HttpRequest("POST", "http://h/api/rooms", headers={"x-forwarded-for": forwarded}, body=b"")
    assert http_api.client_address(req) == expected


async def test_health_is_cached_and_hides_exception_text(host: FunctionHost, monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[str] = []

    class Down:
        async def ping(self) -> None:
            probes.append("ping")
            raise OSError("connect to 10.1.2.3:10000 refused, key=s3cret")

    class Translator:
        async def health(self) -> tuple[bool, str]:
            return True, "engine ok"

    monkeypatch.setattr(http_api, "_health", None)
    monkeypatch.setattr(deps, "room_store", lambda: Down())
    monkeypatch.setattr(deps, "broadcaster", lambda: Down())
    monkeypatch.setattr(deps, "translator", lambda: Translator())
    status, out, _ = await call(host, "GET", "api/health")
    assert status == 200 and out["status"] == "degraded" and not out["dependencies"]["storage"]["ok"]
    assert "s3cret" not in json.dumps(out) and "10.1.2.3" not in json.dumps(out)
    assert (await call(host, "GET", "api/health"))[1] == out
    assert probes == ["ping", "ping"]  # the second answer came from the cache: no new probes


@pytest.mark.parametrize("path", ["..%2f..%2fetc%2fpasswd", "../function_app.py", "js/../../host.json", "a\x00b",
                                  "index.html\x00.js", ".git/config", "/etc/passwd", "..\\host.json", "C:/x"])
def test_static_function_refuses_traversal_and_nul_with_404(path: str) -> None:
    req = func.HttpRequest("GET", "http://h/x", headers={}, route_params={"path": path}, body=b"")
    res = web_fn.web.build().get_user_function()(req)
    assert res.status_code == 404
    assert res.headers["X-Content-Type-Options"] == "nosniff"


def test_every_page_carries_csp_nosniff_and_no_framing() -> None:
    for path in ("", "index.html", "js/api.js", "css/app.css", "missing.html"):
        req = func.HttpRequest("GET", "http://h/x", headers={}, route_params={"path": path}, body=b"")
        res = web_fn.web.build().get_user_function()(req)
        assert res.status_code == (404 if path == "missing.html" else 200)
        csp = res.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert res.headers["X-Content-Type-Options"] == "nosniff"


# --- fuzz: whatever arrives, a clear 4xx (issue 11 figure) ---------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
fields = st.sampled_from(["displayName", "language", "hear", "invite", "memberKey", "role", "name",
                          "validForMinutes"])
field_values = st.one_of(json_values, st.sampled_from(["en", "es", "pt-BR", "xx", "", "a" * 41, "@INVITE",
                                                       "@MEMBERKEY", 0, 1, 1441, -1, True]))
bodies = st.one_of(
    st.dictionaries(fields, field_values, max_size=6).map(lambda d: ("json", d)),
    json_values.map(lambda v: ("json", v)),
    st.binary(max_size=200).map(lambda b: ("raw", b)),
    st.sampled_from([b"{", b"\xff\xfe", b'{"a":' * 2000, b"[" * 5000 + b"]" * 5000, b"x" * 20_000]).map(
        lambda b: ("raw", b)),
)
requests = st.tuples(
    st.sampled_from([("POST", "api/rooms"), ("POST", "api/rooms/{room}/join"), ("GET", "api/rooms/{room}"),
                     ("POST", "api/rooms/{room}/close"), ("DELETE", "api/rooms/{room}/members/{user}"),
                     ("GET", "api/health")]),
    st.sampled_from(["@ROOM", "nosuchroom", "A", "x" * 40, "%00", "..", "ROOM.ROOM"]),
    st.sampled_from(["@USER", "nosuchroom.abcdefgh", "x", ".", "a.b.c"]),
    bodies,
    st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "", "APPLICATION/JSON"]),
    st.sampled_from(["", "Bearer", "Bearer @HOST", "Bearer @MEMBERKEY", "Bearer x", "Basic Zm9v", "bearer  @INVITE"]),
    st.sampled_from(["", "203.0.113.1", "garbage, ::::", "[::1]:80", "1.2.3.4:notaport"]),
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for every example: the durable client keeps an HTTP session bound to its loop."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _fill(value: Any, secrets_: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in secrets_.items():
            value = value.replace(k, v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, secrets_) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, secrets_) for v in value]
    return value


@settings(max_examples=800, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(req=requests)
def test_fuzzed_requests_get_a_clear_4xx_never_a_5xx(host: FunctionHost, loop: asyncio.AbstractEventLoop,
                                                    req: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    (method, template), room_part, user_part, (kind, body), ctype, auth, forwarded = req
    service = RoomService(MemoryStore(), Tokens(), Identity(), Connections())
    monkeypatch.setattr(deps, "rooms", lambda: service)
    for name in ("CREATE_PER_ADDRESS", "JOIN_PER_ADDRESS", "JOIN_PER_ROOM"):
        monkeypatch.setattr(http_api, name, RateLimiter(1.0, 1000))
    monkeypatch.setattr(http_api, "_health", (float("inf"), {"status": "ok", "dependencies": {}}))

    async def run() -> tuple[int, Any, func.HttpResponse]:
        room = await new_room(host)
        _, joined = await join(host, room)
        secrets_ = {"@INVITE": room["invites"]["speaker"], "@MEMBERKEY": joined["memberKey"],
                    "@HOST": room["hostKey"], "@ROOM": room["roomId"], "@USER": joined["userId"]}
        path = template.format(room=_fill(room_part, secrets_), user=_fill(user_part, secrets_))
        raw = body if kind == "raw" else json.dumps(_fill(body, secrets_)).encode()
        headers = {"content-type": ctype, "authorization": _fill(auth, secrets_), "x-forwarded-for": forwarded}
        if host.http(method, path) is None:
            return 404, None, func.HttpResponse(status_code=404)
        return await call(host, method, path, headers={k: v for k, v in headers.items() if v}, raw=raw)

    status, out, res = loop.run_until_complete(run())
    assert status < 500, (req, out)
    if status >= 400 and out is not None:
        assert set(out) == {"error"} and out["error"]["code"] and out["error"]["message"], out


async def test_a_member_removed_through_another_worker_cannot_connect_again() -> None:
    """Two workers share the store; the connect check reads it fresh, so worker A's cache of a
    member that worker B removed (or of a room B closed) does not let a reconnect in."""
    from babelroom.rooms import CreateRoom, JoinRoom, RoomExpired, RoomNotFound

    store = MemoryStore()
    a = RoomService(store, Tokens(), Identity(), Connections())
    b = RoomService(store, Tokens(), Identity(), Connections())
    created = await a.create(CreateRoom.parse({}))
    rid = created.room.room_id
    eve = await a.join(rid, JoinRoom.parse({"displayName": "Eve", "language": "en", "invite": created.speaker_invite}))
    bob = await a.join(rid, JoinRoom.parse({"displayName": "Bob", "language": "en", "invite": created.speaker_invite}))
    await a.member_for(eve.member.user_id)  # cached in worker A
    await a.member_for(bob.member.user_id)
    await b.remove_member(rid, eve.member.user_id, created.host_key)
    with pytest.raises(RoomNotFound):
        await a.member_for(eve.member.user_id, fresh=True)
    await b.close(rid, created.host_key)
    with pytest.raises(RoomExpired):
        await a.member_for(bob.member.user_id, fresh=True)
    assert ("user", eve.member.user_id) in b.connections.closed  # type: ignore[attr-defined]
    assert ("group", f"{rid}.all") in b.connections.closed  # type: ignore[attr-defined]
