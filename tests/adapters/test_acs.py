"""The ACS adapter against a local ACS look-alike that checks what the real service checks.

No Azure endpoint is reachable from CI, so the official SDK clients talk to an aiohttp server on
127.0.0.1. ``from_connection_string`` drops the scheme and always dials ``https://``, so the
server speaks TLS with a throw-away certificate made here and the SDK trusts it through
azure-core's ``connection_verify`` (a CA bundle path; verification stays on). The constructor
path (``RoomsClient(endpoint, AzureKeyCredential)``) keeps an ``http://`` endpoint and is tested
too. The server verifies the HMAC-SHA256 access-key signature as ACS documents it (string to sign
``VERB\nPATH?QUERY\nx-ms-date;host;x-ms-content-sha256``, signed headers
``x-ms-date;host;x-ms-content-sha256``, body hash in ``x-ms-content-sha256``, key = base64-decoded
access key, at most 15 minutes of clock skew) and the request shapes of the Rooms (2025-03-13) and
Identity (2023-10-01) REST APIs, answering with their documented bodies. Nothing in the SDK is
mocked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from azure.core.credentials import AccessToken, AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from recording_env import RecordingEnv

from babelroom.adapters import acs
from babelroom.adapters.acs import AcsRoomService, from_settings

ROOMS_API = "2025-03-13"
IDENTITY_API = "2023-10-01"
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
AUTH_RE = re.compile(r"^HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=(?P<sig>\S+)$")
MAX_CLOCK_SKEW = timedelta(minutes=15)


def sign(key_b64: str, method: str, path_and_query: str, host: str, date: str, body: bytes) -> dict[str, str]:
    """Reference signer written from the ACS HMAC spec (not the SDK's code) for the server's self-test."""
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{path_and_query}\n{date};{host};{content_hash}"
    digest = hmac.new(base64.b64decode(key_b64), to_sign.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature={signature}",
    }


def verify(key_b64: str, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """Return why ACS would refuse this request, or None when the signature holds."""
    date = headers.get("x-ms-date")
    content_hash = headers.get("x-ms-content-sha256")
    host = headers.get("Host")
    match = AUTH_RE.match(headers.get("Authorization", ""))
    if not (date and content_hash and host and match):
        return "missing x-ms-date, x-ms-content-sha256, Host or HMAC-SHA256 Authorization"
    try:
        sent_at = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return "x-ms-date is not an RFC 1123 date"
    if sent_at.tzinfo is None or abs(datetime.now(UTC) - sent_at) > MAX_CLOCK_SKEW:
        return "x-ms-date is more than 15 minutes off"
    if base64.b64encode(hashlib.sha256(body).digest()).decode() != content_hash:
        return "x-ms-content-sha256 does not match the body"
    expected = sign(key_b64, method, path_and_query, host, date, body)["Authorization"]
    if not hmac.compare_digest(expected.encode(), headers["Authorization"].encode()):
        return "signature mismatch"
    return None


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAcs:
    """The three ACS operations the adapter uses, plus GET room, with ACS's validation."""

    key: str
    bearer: str | None = None  # an Entra token the look-alike accepts instead of the HMAC key
    requests: list[Seen] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    participants: dict[str, dict[str, str]] = field(default_factory=dict)
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            reason = None if self.bearer and auth == f"Bearer {self.bearer}" else "bearer token not accepted"
        else:
            reason = verify(self.key, request.method, request.raw_path, request.headers, body)
        if reason:
            self.refusals.append(reason)
            return self.error(401, "Denied", f"Denied by the resource provider: {reason}")
        parsed = json.loads(body) if body else None
        self.requests.append(Seen(request.method, request.path, dict(request.query), dict(request.headers), parsed))
        parts = request.path.strip("/").split("/")
        if parts[0] == "rooms":
            if request.query.get("api-version") != ROOMS_API:
                return self.error(400, "BadRequest", "unsupported api-version")
            if request.method == "POST" and len(parts) == 1:
                return self.create_room(request, parsed)
            if request.method == "GET" and len(parts) == 2:
                return self.get_room(parts[1])
            if request.method == "PATCH" and len(parts) == 3 and parts[2] == "participants":
                return self.update_participants(request, parts[1], parsed)
        if parts == ["identities"] and request.method == "POST":
            if request.query.get("api-version") != IDENTITY_API:
                return self.error(400, "BadRequest", "unsupported api-version")
            return self.create_identity(request, parsed)
        return self.error(404, "NotFound", f"no route {request.method} {request.path}")

    def create_room(self, request: web.Request, body: Any) -> web.Response:
        if not request.content_type == "application/json":
            return self.error(415, "BadRequest", "content type must be application/json")
        if not request.headers.get("Repeatability-Request-Id") or not request.headers.get("Repeatability-First-Sent"):
            return self.error(400, "BadRequest", "repeatability headers missing")
        try:
            start = datetime.fromisoformat(body["validFrom"])
            end = datetime.fromisoformat(body["validUntil"])
        except (KeyError, TypeError, ValueError):
            return self.error(400, "BadRequest", "validFrom/validUntil must be ISO-8601")
        if end <= start or end - start > timedelta(days=180):
            return self.error(400, "BadRequest", "room validity must be positive and at most 180 days")
        room_id = str(99_000_000_000_000 + len(self.rooms))
        room = {
            "id": room_id,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "validFrom": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "validUntil": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "pstnDialOutEnabled": bool(body.get("pstnDialOutEnabled", False)),
        }
        self.rooms[room_id] = room
        self.participants[room_id] = {}
        return web.json_response(room, status=201)

    def get_room(self, room_id: str) -> web.Response:
        if room_id not in self.rooms:
            return self.error(404, "NotFound", "room not found")
        return web.json_response(self.rooms[room_id])

    def update_participants(self, request: web.Request, room_id: str, body: Any) -> web.Response:
        if request.content_type != "application/merge-patch+json":
            return self.error(415, "BadRequest", "content type must be application/merge-patch+json")
        if room_id not in self.rooms:
            return self.error(404, "NotFound", "room not found")
        if not isinstance(body, dict) or not isinstance(body.get("participants"), dict):
            return self.error(400, "BadRequest", "participants map required")
        for raw_id, value in body["participants"].items():
            if raw_id not in self.identities:
                return self.error(400, "BadRequest", f"unknown identity {raw_id}")
            if value is None:
                self.participants[room_id].pop(raw_id, None)
            elif value.get("role") in {"Presenter", "Attendee", "Consumer", "Collaborator"}:
                self.participants[room_id][raw_id] = value["role"]
            else:
                return self.error(400, "BadRequest", "bad role")
        return web.json_response({})

    def create_identity(self, request: web.Request, body: Any) -> web.Response:
        # The body is optional (the SDK's create_user sends none); when present it is a JSON object.
        if body is None:
            body = {}
        elif request.content_type != "application/json" or not isinstance(body, dict):
            return self.error(400, "BadRequest", "the body must be a JSON object")
        minutes = body.get("expiresInMinutes")
        if minutes is not None and not (60 <= minutes <= 1440):
            return self.error(400, "ValidationError", "expiresInMinutes must be within 60..1440")
        raw_id = f"8:acs:{secrets.token_hex(4)}_{secrets.token_hex(8)}"
        self.identities[raw_id] = body
        result: dict[str, Any] = {"identity": {"id": raw_id}}
        if body.get("createTokenWithScopes"):
            expires = datetime.now(UTC) + timedelta(minutes=minutes or 1440)
            result["accessToken"] = {
                "token": "eyJ" + secrets.token_urlsafe(24),
                "expiresOn": expires.strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00"),
            }
        return web.json_response(result, status=201)


KEY = base64.b64encode(b"babelroom-test-access-key-32byte").decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A self-signed certificate for 127.0.0.1: the server's context and the CA file the SDK trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("acs-tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


async def _serve(fake: FakeAcs, context: ssl.SSLContext | None) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"{'https' if context else 'http'}://127.0.0.1:{port}"


@pytest.fixture
async def fake_acs(tls: tuple[ssl.SSLContext, str]) -> AsyncIterator[tuple[FakeAcs, str]]:
    """The look-alike on https://127.0.0.1:<port> (what a connection string always dials)."""
    fake = FakeAcs(KEY)
    runner, endpoint = await _serve(fake, tls[0])
    try:
        yield fake, endpoint
    finally:
        await runner.cleanup()


@pytest.fixture
def ca_file(tls: tuple[ssl.SSLContext, str]) -> str:
    return tls[1]


@pytest.fixture
async def service(fake_acs: tuple[FakeAcs, str], ca_file: str) -> AsyncIterator[AcsRoomService]:
    _, endpoint = fake_acs
    svc = AcsRoomService.from_connection_string(f"endpoint={endpoint}/;accesskey={KEY}", connection_verify=ca_file)
    async with svc:
        yield svc


def soon(minutes: int) -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(microsecond=0)
    return start, start + timedelta(minutes=minutes)


# --- the server's own checks can fail -------------------------------------------------------


def test_verifier_accepts_the_spec_signature_and_refuses_any_change() -> None:
    date = format_datetime(datetime.now(UTC), usegmt=True)
    body = b'{"validFrom": "x"}'
    headers = {
        "Host": "acs.example:443",
        **sign(KEY, "POST", "/rooms?api-version=1", "acs.example:443", date, body),
    }
    assert verify(KEY, "POST", "/rooms?api-version=1", headers, body) is None
    assert verify(KEY, "PATCH", "/rooms?api-version=1", headers, body) == "signature mismatch"
    assert verify(KEY, "POST", "/rooms?api-version=2", headers, body) == "signature mismatch"
    assert verify(KEY, "POST", "/rooms?api-version=1", {**headers, "Host": "evil"}, body) == "signature mismatch"
    assert verify(KEY, "POST", "/rooms?api-version=1", headers, b"{}") == "x-ms-content-sha256 does not match the body"
    other = base64.b64encode(b"another-key-another-key-32-bytes").decode()
    assert verify(other, "POST", "/rooms?api-version=1", headers, body) == "signature mismatch"
    stale = format_datetime(datetime.now(UTC) - timedelta(minutes=20), usegmt=True)
    old = {"Host": "h", **sign(KEY, "GET", "/", "h", stale, b"")}
    assert verify(KEY, "GET", "/", old, b"") == "x-ms-date is more than 15 minutes off"


async def test_server_refuses_a_request_signed_for_another_body(
    fake_acs: tuple[FakeAcs, str], tls: tuple[ssl.SSLContext, str]
) -> None:
    fake, endpoint = fake_acs
    host = endpoint.removeprefix("https://")
    date = format_datetime(datetime.now(UTC), usegmt=True)
    path = f"/rooms?api-version={ROOMS_API}"
    signed = sign(KEY, "POST", path, host, date, b'{"validFrom": "a"}')
    trust = ssl.create_default_context(cafile=tls[1])
    async with aiohttp.ClientSession() as http:
        async with http.post(endpoint + path, data=b'{"validFrom": "b"}', headers=signed, ssl=trust) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "Denied"
    assert fake.refusals == ["x-ms-content-sha256 does not match the body"]


# --- the adapter through the real SDK ------------------------------------------------------


async def test_create_room_sends_a_signed_create_with_the_validity_window(
    fake_acs: tuple[FakeAcs, str], service: AcsRoomService
) -> None:
    fake, _ = fake_acs
    start, end = soon(120)
    room_id = await service.create_room(start, end)

    assert room_id in fake.rooms
    assert fake.refusals == []
    (seen,) = fake.requests
    assert (seen.method, seen.path, seen.query) == ("POST", "/rooms", {"api-version": ROOMS_API})
    assert seen.headers["Content-Type"].startswith("application/json")
    assert datetime.fromisoformat(seen.body["validFrom"]) == start
    assert datetime.fromisoformat(seen.body["validUntil"]) == end
    assert seen.body.get("pstnDialOutEnabled") is False
    assert "participants" not in seen.body  # members are added per join, each with its own role


async def test_speaker_gets_an_identity_without_a_token_and_joins_as_presenter(
    fake_acs: tuple[FakeAcs, str], service: AcsRoomService
) -> None:
    fake, _ = fake_acs
    room_id = await service.create_room(*soon(150))

    user_id = await service.add_participant(room_id, "speaker")

    assert user_id.startswith("8:acs:") and user_id in fake.identities
    create_user, patch = fake.requests[1:]
    assert (create_user.method, create_user.path, create_user.query) == (
        "POST",
        "/identities",
        {"api-version": IDENTITY_API},
    )
    assert not (create_user.body or {}).get("createTokenWithScopes")  # no token nobody uses
    assert (patch.method, patch.path) == ("PATCH", f"/rooms/{room_id}/participants")
    assert patch.headers["Content-Type"].startswith("application/merge-patch+json")
    assert patch.body == {"participants": {user_id: {"role": "Presenter"}}}
    assert fake.participants[room_id] == {user_id: "Presenter"}


async def test_listener_joins_as_consumer_who_cannot_speak_in_the_call(
    fake_acs: tuple[FakeAcs, str], service: AcsRoomService
) -> None:
    fake, _ = fake_acs
    room_id = await service.create_room(*soon(300))
    user_id = await service.add_participant(room_id, "listener")
    assert fake.participants[room_id] == {user_id: "Consumer"}  # an Attendee could unmute and speak
    assert [r.method for r in fake.requests[1:]] == ["POST", "PATCH"]


async def test_a_removed_member_leaves_the_acs_room(fake_acs: tuple[FakeAcs, str], service: AcsRoomService) -> None:
    fake, _ = fake_acs
    room_id = await service.create_room(*soon(60))
    keep = await service.add_participant(room_id, "speaker")
    gone = await service.add_participant(room_id, "listener")
    await service.remove_participant(room_id, gone)
    assert fake.participants[room_id] == {keep: "Presenter"}
    assert fake.requests[-1].body == {"participants": {gone: None}}


async def test_a_wrong_key_is_refused_with_401_and_the_adapter_raises(
    fake_acs: tuple[FakeAcs, str], ca_file: str
) -> None:
    fake, endpoint = fake_acs
    wrong = base64.b64encode(b"not-the-key-of-this-acs-resource").decode()
    conn = f"endpoint={endpoint}/;accesskey={wrong}"
    async with AcsRoomService.from_connection_string(conn, connection_verify=ca_file) as bad:
        with pytest.raises(ClientAuthenticationError) as info:
            await bad.create_room(*soon(60))
        assert info.value.status_code == 401
        with pytest.raises(HttpResponseError):
            await bad.add_participant("99000000000000", "speaker")
    assert fake.requests == [] and fake.rooms == {} and fake.identities == {}
    assert fake.refusals == ["signature mismatch", "signature mismatch"]


async def test_the_key_credential_constructor_signs_plain_http_endpoints_too() -> None:
    """``RoomsClient(endpoint, AzureKeyCredential)`` keeps ``http://``: same signature, host with port."""
    fake = FakeAcs(KEY)
    runner, endpoint = await _serve(fake, None)
    try:
        async with AcsRoomService.from_credential(endpoint, AzureKeyCredential(KEY)) as svc:
            room_id = await svc.create_room(*soon(90))
            user_id = await svc.add_participant(room_id, "speaker")
        assert fake.refusals == []
        assert fake.participants[room_id] == {user_id: "Presenter"}
        assert {r.headers["Host"] for r in fake.requests} == {endpoint.removeprefix("http://")}
    finally:
        await runner.cleanup()


async def test_adding_to_an_unknown_room_raises_not_found(
    fake_acs: tuple[FakeAcs, str], service: AcsRoomService
) -> None:
    with pytest.raises(ResourceNotFoundError):
        await service.add_participant("12345", "listener")


async def test_bad_arguments_fail_before_any_request(fake_acs: tuple[FakeAcs, str], service: AcsRoomService) -> None:
    fake, _ = fake_acs
    start, end = soon(60)
    with pytest.raises(ValueError, match="role"):
        await service.add_participant("1", "moderator")
    with pytest.raises(ValueError, match="timezone-aware"):
        await service.create_room(start.replace(tzinfo=None), end)
    with pytest.raises(ValueError, match="after"):
        await service.create_room(end, start)
    assert fake.requests == [] and fake.refusals == []


# --- settings --------------------------------------------------------------------------------


@pytest.fixture
def env() -> Iterator[RecordingEnv]:
    yield RecordingEnv()


async def test_from_settings_is_none_without_acs_and_reads_only_declared_settings(env: RecordingEnv) -> None:
    assert from_settings(env) is None
    env.update({"ACS_ENDPOINT": "https://acs.example.communication.azure.com", "AZURE_CLIENT_ID": "abc"})
    svc = from_settings(env)
    assert svc is not None
    await svc.aclose()
    assert env.read <= set(acs.SETTINGS)
    assert set(acs.SETTINGS) == {"ACS_CONNECTION_STRING", "ACS_ENDPOINT", "AZURE_CLIENT_ID"}


async def test_from_settings_uses_the_user_assigned_identity_when_its_client_id_is_set() -> None:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    svc = from_settings({"ACS_ENDPOINT": "https://acs.example.communication.azure.com", "AZURE_CLIENT_ID": "abc"})
    assert svc is not None and isinstance(svc._credential, ManagedIdentityCredential)
    await svc.aclose()
    svc = from_settings({"ACS_ENDPOINT": "https://acs.example.communication.azure.com"})
    assert svc is not None and isinstance(svc._credential, DefaultAzureCredential)
    await svc.aclose()


async def test_from_settings_prefers_the_connection_string(fake_acs: tuple[FakeAcs, str], ca_file: str) -> None:
    fake, endpoint = fake_acs
    svc = from_settings(
        {
            "ACS_CONNECTION_STRING": f"endpoint={endpoint}/;accesskey={KEY}",
            "ACS_ENDPOINT": "https://elsewhere",
        },
        connection_verify=ca_file,
    )
    assert svc is not None
    async with svc:
        room_id = await svc.create_room(*soon(60))
    assert room_id in fake.rooms


# --- through the RoomService port ---------------------------------------------------------------


class MemoryStore:
    """Just enough RoomStore for create, join and remove."""

    def __init__(self) -> None:
        self.rooms: dict[str, Any] = {}
        self.members: dict[tuple[str, str], Any] = {}

    async def save_room(self, room: Any) -> None:
        self.rooms[room.room_id] = room

    async def get_room(self, room_id: str) -> Any:
        return self.rooms.get(room_id)

    async def save_member(self, member: Any) -> None:
        self.members[(member.room_id, member.member_id)] = member

    async def get_member(self, room_id: str, member_id: str) -> Any:
        return self.members.get((room_id, member_id))

    async def roster(self, room_id: str) -> dict[str, str]:
        return {k: m.hear for (r, k), m in self.members.items() if r == room_id}

    async def delete_member(self, room_id: str, member_id: str) -> None:
        self.members.pop((room_id, member_id), None)

    async def schedule_end(self, room: Any) -> None:
        pass


class UrlTokens:
    async def client_url(self, user_id: str, minutes: int) -> str:
        return f"wss://wps.example/client/hubs/rooms?access_token={user_id}.{minutes}"


async def test_room_service_mirrors_rooms_and_members_into_acs(
    fake_acs: tuple[FakeAcs, str], service: AcsRoomService
) -> None:
    """The adapter plugged into babelroom's RoomService as its IdentityProvider, as functions/deps.py does."""
    from babelroom.rooms import CreateRoom, JoinRoom, RoomService

    fake, _ = fake_acs
    store = MemoryStore()
    rooms = RoomService(store, UrlTokens(), service)
    created = await rooms.create(CreateRoom.parse({"name": "standup", "validForMinutes": 90}))
    room = created.room
    assert room.acs_room_id in fake.rooms
    assert datetime.fromisoformat(fake.requests[0].body["validUntil"]) == room.valid_until

    join = {"displayName": "Ana", "language": "es", "invite": created.listener_invite}
    ticket = await rooms.join(room.room_id, JoinRoom.parse(join))
    assert "acs" not in ticket.public() and ticket.member.role == "listener"
    assert fake.participants[room.acs_room_id] == {ticket.member.acs_user_id: "Consumer"}
    assert store.members[(room.room_id, ticket.member.member_id)].acs_user_id == ticket.member.acs_user_id

    await rooms.remove_member(room.room_id, ticket.member.user_id, created.host_key)
    assert fake.participants[room.acs_room_id] == {}


async def test_acs_down_makes_join_a_clear_unavailable_error(tls: tuple[ssl.SSLContext, str], ca_file: str) -> None:
    """ACS refusing or unreachable: the join is refused as Unavailable (HTTP 503 + Retry-After), and
    nobody is half-joined."""
    from babelroom.rooms import CreateRoom, JoinRoom, RoomService, Unavailable

    fake = FakeAcs(KEY)
    runner, endpoint = await _serve(fake, tls[0])
    svc = AcsRoomService.from_connection_string(f"endpoint={endpoint}/;accesskey={KEY}", connection_verify=ca_file,
                                                retry_total=0)
    async with svc:
        store = MemoryStore()
        rooms = RoomService(store, UrlTokens(), svc)
        created = await rooms.create(CreateRoom.parse({}))
        fake.key = base64.b64encode(b"rotated-key-rotated-key-32-bytes").decode()  # now every call is refused
        join = JoinRoom.parse({"displayName": "Ana", "language": "es", "invite": created.speaker_invite})
        with pytest.raises(Unavailable) as info:
            await rooms.join(created.room.room_id, join)
        assert info.value.status == 503 and info.value.retry_after > 0
        assert store.members == {}
        await runner.cleanup()  # and gone altogether
        with pytest.raises(Unavailable):
            await rooms.create(CreateRoom.parse({}))


class StaticCredential:
    """An async token credential handing out one token, recording the scopes it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> StaticCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def test_entra_id_path_sends_a_bearer_token_for_the_acs_scope(
    fake_acs: tuple[FakeAcs, str], ca_file: str
) -> None:
    """What Azure runs: ACS_ENDPOINT + a token credential (the managed identity), no key at all."""
    fake, endpoint = fake_acs
    fake.bearer = "entra-token-for-the-app"
    credential = StaticCredential(fake.bearer)
    async with AcsRoomService.from_credential(endpoint, credential, connection_verify=ca_file) as svc:  # type: ignore[arg-type]
        room_id = await svc.create_room(*soon(60))
        user_id = await svc.add_participant(room_id, "listener")
    assert credential.closed  # the adapter owns the credential it was given
    assert fake.refusals == []
    assert fake.participants[room_id] == {user_id: "Consumer"}
    assert {s for call in credential.scopes for s in call} == {"https://communication.azure.com//.default"}
    assert all(r.headers["Authorization"] == f"Bearer {fake.bearer}" for r in fake.requests)
    assert not any("x-ms-content-sha256" in {k.lower() for k in r.headers} for r in fake.requests)


async def test_entra_id_path_raises_when_the_token_is_refused(fake_acs: tuple[FakeAcs, str], ca_file: str) -> None:
    fake, endpoint = fake_acs
    fake.bearer = "the-right-token"
    credential = StaticCredential("a-token-for-another-resource")
    async with AcsRoomService.from_credential(endpoint, credential, connection_verify=ca_file) as svc:  # type: ignore[arg-type]
        with pytest.raises(ClientAuthenticationError):
            await svc.create_room(*soon(60))
    assert fake.refusals == ["bearer token not accepted"] and fake.rooms == {}
