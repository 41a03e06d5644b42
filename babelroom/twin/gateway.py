"""Azure Web PubSub look-alike for the offline twin.

Browsers and the official SDKs (``azure-messaging-webpubsubclient`` / ``-webpubsubservice``)
talk to this exactly as they would to ``https://<name>.webpubsub.azure.com``: client WebSockets
on ``/client/hubs/{hub}`` with the ``json.webpubsub.azure.v1`` and
``json.reliable.webpubsub.azure.v1`` subprotocols (or none: "simple" clients), and the REST data
plane under ``/api/hubs/{hub}``. Client events are handed to an :class:`EventSink` (the twin host,
which dispatches them to the registered ``webPubSubTrigger`` functions) the way the service
calls its event handler: ``connect`` (blocking, can refuse), ``connected``, user events
(blocking, can answer) and ``disconnected``.

Behaviour follows the service (and Microsoft's own emulator) where the docs are silent:
invalid frames without an ``ackId`` close the socket with 1007, oversize frames with 1009,
a receiver that cannot keep up is closed with 1008, reliable connections survive a socket drop
for 30 s and are resumed with ``awps_connection_id`` + ``awps_reconnection_token``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import secrets
import time
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from babelroom.twin.wpsauth import (
    TokenError,
    claim_list,
    connection_signature,
    parse_connection_string,
    sign_client_token,
    verify_client_token,
    verify_rest_token,
)

log = logging.getLogger("babelroom.twin.gateway")

SUBPROTOCOL_JSON = "json.webpubsub.azure.v1"
SUBPROTOCOL_RELIABLE = "json.reliable.webpubsub.azure.v1"
SUPPORTED_SUBPROTOCOLS = (SUBPROTOCOL_RELIABLE, SUBPROTOCOL_JSON)

HUB_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_`,.\[\]]{0,127}$")
EVENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,127}$", re.IGNORECASE)
MAX_GROUP_NAME = 1024
CONTROL_ALLOWANCE = 64  # outbound queue headroom for acks/pongs above the data limit

ROLE_JOIN_LEAVE = "webpubsub.joinLeaveGroup"
ROLE_SEND_TO_GROUP = "webpubsub.sendToGroup"

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


# --------------------------------------------------------------------------- sink interface


@dataclass
class ConnectionContext:
    """What the service puts in the ``ce-*`` headers of every upstream event.

    ``event_type`` is ``"system"`` (connect/connected/disconnected) or ``"user"``; ``signature`` is
    ``sha256=<hex HMAC of connection_id with the access key>``; ``headers`` are the WebSocket
    upgrade request's headers; ``states`` are the connection states set by earlier responses.
    """

    hub: str
    connection_id: str
    user_id: str | None
    event_type: str
    event_name: str
    signature: str | None = None
    headers: dict[str, list[str]] | None = None
    states: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConnectRequest:
    """Body of the ``connect`` system event: token claims, query, offered subprotocols, certs."""

    context: ConnectionContext
    claims: dict[str, list[str]]
    query: dict[str, list[str]]
    subprotocols: list[str]
    client_certificates: list[Any] = field(default_factory=list)


@dataclass
class ConnectResult:
    """The upstream's answer to ``connect``; ``ok=False`` refuses the WebSocket upgrade.

    ``error_code``: ``"unauthorized"`` (401), ``"forbidden"`` (403), ``"userError"`` (400),
    ``"serverError"`` (500). ``user_id`` overrides the token's ``sub``; ``groups`` are joined and
    ``roles`` granted on top of the token's; ``subprotocol`` is only used for simple clients that
    offered custom subprotocols. ``states`` (optional) become the connection states.
    """

    ok: bool = True
    user_id: str | None = None
    groups: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    subprotocol: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    states: dict[str, Any] | None = None


@dataclass
class UserEventResult:
    """The upstream's answer to a user event.

    ``data`` (if not None) is sent back to the calling connection only, as a ``from: "server"``
    message: a JSON value for ``"json"`` (bytes are parsed as JSON text), ``str`` for ``"text"``,
    ``bytes`` (or a base64 str) for ``"binary"``. ``ok=False`` fails the client's ack with
    ``error_code`` -> ack error name (``unauthorized`` -> Forbidden, ``userError`` -> BadRequest,
    anything else -> InternalServerError) and ``error_message``.
    """

    ok: bool = True
    data: Any = None
    data_type: str = "json"
    error_code: str | None = None
    error_message: str | None = None
    states: dict[str, Any] | None = None


class EventSink(Protocol):
    """The upstream event handler (the twin host dispatching to webPubSubTrigger functions).

    ``user_event`` receives ``data`` decoded per ``data_type``: a JSON value for ``"json"``,
    ``str`` for ``"text"``, ``bytes`` for ``"binary"``.
    """

    async def connect(self, hub: str, request: ConnectRequest) -> ConnectResult: ...

    async def connected(self, hub: str, context: ConnectionContext) -> None: ...

    async def user_event(
        self, hub: str, event: str, context: ConnectionContext, data: Any, data_type: str
    ) -> UserEventResult: ...

    async def disconnected(self, hub: str, context: ConnectionContext, reason: str | None) -> None: ...


# --------------------------------------------------------------------------- payloads


class _BadFrame(Exception):
    """A client frame that does not follow the subprotocol."""


@dataclass(frozen=True)
class _Data:
    """One message body with its Web PubSub data type (json value / str / bytes)."""

    data_type: str
    value: Any

    def raw(self) -> str | bytes:
        """What a simple WebSocket client receives: the text, the JSON text, or binary bytes."""
        if self.data_type == "binary":
            return bytes(self.value)
        if self.data_type == "text":
            return str(self.value)
        return json.dumps(self.value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def json_fields(self) -> str:
        """``"dataType":..,"data":..`` for the JSON subprotocols (binary as base64)."""
        if self.data_type == "binary":
            encoded: Any = base64.b64encode(bytes(self.value)).decode("ascii")
        else:
            encoded = self.value
        data = json.dumps(encoded, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return f'"dataType":"{self.data_type}","data":{data}'

    def size(self) -> int:
        raw = self.raw()
        return len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))


@dataclass
class _Out:
    """A data message to fan out; the JSON frame is built once and only the sequenceId varies."""

    data: _Data
    group: str | None = None
    from_user_id: str | None = None
    _prefix: str | None = None
    _raw: str | bytes | None = None

    def frame(self, sequence_id: int | None) -> str:
        if self._prefix is None:
            head: dict[str, Any] = {"type": "message"}
            if self.group is not None:
                head["from"] = "group"
                head["group"] = self.group
                if self.from_user_id is not None:
                    head["fromUserId"] = self.from_user_id
            else:
                head["from"] = "server"
            self._prefix = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
            self._prefix += "," + self.data.json_fields()
        if sequence_id is None:
            return self._prefix + "}"
        return f'{self._prefix},"sequenceId":{sequence_id}}}'

    def raw(self) -> str | bytes:
        if self._raw is None:
            self._raw = self.data.raw()
        return self._raw


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str | bytes) -> Any:
    """Strict JSON (no NaN/Infinity), like the service's parser: what we relay must stay valid JSON."""
    return json.loads(text, parse_constant=_no_constants)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _parse_client_data(msg: dict[str, Any]) -> _Data:
    """Decode ``dataType``/``data`` of a sendToGroup/event frame as the service does."""
    if "data" not in msg:
        raise _BadFrame("Missing required property 'data'.")
    data = msg["data"]
    data_type = msg.get("dataType", "json")
    if not isinstance(data_type, str):
        raise _BadFrame("Expected 'dataType' to be a string.")
    data_type = data_type.lower()
    if data_type == "text":
        if not isinstance(data, str):
            raise _BadFrame("'data' should be a string when 'dataType' is 'text'.")
        return _Data("text", data)
    if data_type == "binary":
        if not isinstance(data, str):
            raise _BadFrame("'data' is not a valid base64 encoded string.")
        try:
            return _Data("binary", base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise _BadFrame("'data' is not a valid base64 encoded string.") from exc
    if data_type == "json":
        if data is None:
            raise _BadFrame("Invalid value for 'data': null.")
        return _Data("json", data)
    raise _BadFrame(f"Unknown 'dataType': {data_type}.")


def _result_data(data: Any, data_type: str) -> _Data:
    """Normalise an upstream response body into a message body."""
    data_type = (data_type or "json").lower()
    if data_type == "binary":
        if isinstance(data, str):
            return _Data("binary", base64.b64decode(data))
        return _Data("binary", bytes(data))
    if data_type == "text":
        if isinstance(data, (bytes, bytearray)):
            return _Data("text", bytes(data).decode("utf-8"))
        return _Data("text", str(data))
    if isinstance(data, (bytes, bytearray)):
        return _Data("json", _loads(bytes(data).decode("utf-8")))
    return _Data("json", data)


def _valid_group(group: Any) -> bool:
    return isinstance(group, str) and 0 < len(group) <= MAX_GROUP_NAME and not group.isspace()


def _optional_uint(msg: dict[str, Any], name: str) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 1 << 64:
        raise _BadFrame(f"'{name}' is not a valid uint64 value.")
    return value


# --------------------------------------------------------------------------- connections


class _Close:
    """Queue sentinel: flush what is queued before it, then send a close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Transport:
    """One physical WebSocket of a (logical) connection, with its bounded outbound queue.

    The writer task is the only place that awaits the network, so a slow client only ever fills
    its own queue; when that queue is full the connection is closed with 1008 instead of
    stalling whoever is sending.
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, limit: int, generation: int) -> None:
        self.ws = ws
        self.request = request
        self.limit = limit
        self.generation = generation
        self.queue: asyncio.Queue[str | bytes | _Close] = asyncio.Queue()
        self.closing = False
        self.recoverable = True  # whether ending this socket keeps a reliable connection alive
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def enqueue(self, item: str | bytes, *, control: bool = False, force: bool = False) -> bool:
        """Queue a frame; False when the client is too slow (its queue is full).

        Control frames (acks, pongs, replies) get a little headroom above the data limit; ``force``
        (the replay of a recovered connection, already bounded by the reliable buffer) gets all.
        """
        if self.closing:
            return True  # dropped silently: the socket is going away; reliable data stays buffered
        limit = self.limit + (CONTROL_ALLOWANCE if control else 0)
        if not force and self.queue.qsize() >= limit:
            return False
        self.queue.put_nowait(item)
        return True

    def close_after_flush(self, code: int, reason: str, *, recoverable: bool) -> None:
        if self.closing:
            return
        self.recoverable = recoverable
        self.queue.put_nowait(_Close(code, reason))
        self.closing = True

    def abort(self, code: int, reason: str, *, recoverable: bool) -> None:
        """Close now, dropping whatever is queued (slow consumer, superseded socket)."""
        if self.closing and self.writer.done():
            return
        self.closing = True
        self.recoverable = recoverable
        self.writer.cancel()
        asyncio.get_running_loop().create_task(self._hard_close(code, reason))

    async def _hard_close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(2):
                await self.ws.close(code=code, message=reason.encode("utf-8")[:120])
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            transport = self.request.transport
            if transport is not None and not self.ws.closed:
                transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, _Close):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await self.ws.close(code=item.code, message=item.reason.encode("utf-8")[:120])
                    return
                if isinstance(item, bytes):
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_str(item)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer stopped: %s", exc)
            self.closing = True


class _Connection:
    """A logical Web PubSub connection; outlives its socket for the reliable protocol."""

    def __init__(
        self,
        hub: str,
        connection_id: str,
        user_id: str | None,
        subprotocol: str | None,
        roles: Iterable[str],
        claims: dict[str, list[str]],
        headers: dict[str, list[str]],
        signature: str,
    ) -> None:
        self.hub = hub
        self.connection_id = connection_id
        self.user_id = user_id
        self.subprotocol = subprotocol
        self.reliable = subprotocol == SUBPROTOCOL_RELIABLE
        self.raw = subprotocol not in SUPPORTED_SUBPROTOCOLS
        self.roles: set[str] = set(roles)
        self.claims = claims
        self.headers = headers
        self.signature = signature
        self.states: dict[str, Any] = {}
        self.groups: set[str] = set()
        self.transport: _Transport | None = None
        self.generation = 0
        self.closed = False
        self.reconnection_token = secrets.token_urlsafe(24) if self.reliable else None
        self.next_sequence_id = 0
        self.unacked: OrderedDict[int, str] = OrderedDict()
        self.unacked_bytes = 0
        self.ack_ids: OrderedDict[int, None] = OrderedDict()
        self.expiry: asyncio.TimerHandle | None = None
        self.connected_task: asyncio.Task[None] | None = None

    def context(self, event_type: str, event_name: str) -> ConnectionContext:
        return ConnectionContext(
            hub=self.hub,
            connection_id=self.connection_id,
            user_id=self.user_id,
            event_type=event_type,
            event_name=event_name,
            signature=self.signature,
            headers=self.headers,
            states=dict(self.states),
        )

    def can_join_leave(self, group: str) -> bool:
        return self._has(ROLE_JOIN_LEAVE, group)

    def can_send_to(self, group: str) -> bool:
        return self._has(ROLE_SEND_TO_GROUP, group)

    def _has(self, role: str, group: str) -> bool:
        return role in self.roles or f"{role}.{group}" in self.roles

    def remember_ack(self, ack_id: int) -> None:
        self.ack_ids[ack_id] = None
        while len(self.ack_ids) > 10_000:
            self.ack_ids.popitem(last=False)

    def acknowledge(self, sequence_id: int) -> None:
        while self.unacked:
            first = next(iter(self.unacked))
            if first > sequence_id:
                break
            self.unacked_bytes -= len(self.unacked.pop(first))


@dataclass
class _Hub:
    connections: dict[str, _Connection] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    user_groups: dict[str, set[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- gateway


class Gateway:
    """The Web PubSub client endpoint + REST data plane for one connection string, all hubs."""

    def __init__(
        self,
        connection_string: str,
        hub_sink: EventSink,
        *,
        max_message_bytes: int = 1 << 20,
        recovery_window: float = 30.0,
        upstream_timeout: float = 60.0,
        outbound_queue_limit: int = 1024,
        reliable_buffer_messages: int = 1000,
        reliable_buffer_bytes: int = 16 << 20,
        ack_delay: float = 0.02,
        handshake_delay: float = 0.02,
    ) -> None:
        self.cs = parse_connection_string(connection_string)
        self.sink = hub_sink
        self.max_message_bytes = max_message_bytes
        self.recovery_window = recovery_window
        self.upstream_timeout = upstream_timeout
        self.outbound_queue_limit = outbound_queue_limit
        self.reliable_buffer_messages = reliable_buffer_messages
        self.reliable_buffer_bytes = reliable_buffer_bytes
        # azure-messaging-webpubsubclient 1.1.0 sends, *then* starts waiting on a condition variable:
        # an ack that arrives in between is lost and the call stalls for ack_timeout (30 s). Over a
        # real network the round trip hides that race; on loopback we imitate it by holding acks.
        self.ack_delay = ack_delay
        # Same race in WebPubSubClient.open(): it starts the socket thread, then waits for on_open;
        # a handshake that completes first leaves open() (and every recovery) waiting start_timeout.
        self.handshake_delay = handshake_delay
        self._hubs: dict[str, _Hub] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ wiring

    def add_routes(self, app: web.Application) -> None:
        """Mount ``/client/hubs/{hub}``, ``/client/`` and ``/api/hubs/...`` on the host's app."""
        app.router.add_get("/client/hubs/{hub}", self._client_endpoint)
        app.router.add_get("/client/hubs/{hub}/", self._client_endpoint)
        app.router.add_get("/client/", self._client_endpoint)
        app.router.add_route("*", "/api/hubs/{tail:.*}", self._rest)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Close every socket (1001) and forget all connections; no disconnected events."""
        for hub in self._hubs.values():
            for conn in list(hub.connections.values()):
                conn.closed = True
                if conn.expiry:
                    conn.expiry.cancel()
                if conn.transport:
                    conn.transport.abort(CLOSE_GOING_AWAY, "Service is shutting down.", recoverable=False)
        self._hubs.clear()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _hub(self, hub: str) -> _Hub:
        return self._hubs.setdefault(hub.lower(), _Hub())

    def _endpoints(self, request: web.Request) -> list[str]:
        return [self.cs.endpoint, f"{request.scheme}://{request.host}"]

    # ------------------------------------------------------------------ inspection (tests, host)

    def connection_ids(self, hub: str) -> list[str]:
        """Connection ids currently alive (attached or within their recovery window)."""
        h = self._hubs.get(hub.lower())
        return list(h.connections) if h else []

    def group_members(self, hub: str, group: str) -> set[str]:
        h = self._hubs.get(hub.lower())
        return set(h.groups.get(group, ())) if h else set()

    async def drop_socket(self, hub: str, connection_id: str, code: int = CLOSE_GOING_AWAY) -> bool:
        """Simulate a network drop: close the socket but keep a reliable connection recoverable."""
        h = self._hubs.get(hub.lower())
        conn = h.connections.get(connection_id) if h else None
        if conn is None or conn.transport is None:
            return False
        conn.transport.abort(code, "Simulated network drop.", recoverable=True)
        return True

    # ------------------------------------------------------------------ client endpoint

    async def _client_endpoint(self, request: web.Request) -> web.StreamResponse:
        if not web.WebSocketResponse().can_prepare(request).ok:
            return web.Response(status=400, text="This endpoint only accepts WebSocket requests.")
        hub_raw = request.match_info.get("hub") or request.query.get("hub", "")
        if not HUB_NAME_RE.match(hub_raw):
            return web.Response(status=400, text="Invalid hub name.")
        hub = hub_raw.lower()
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        selected = next((p for p in offered if p.lower() in SUPPORTED_SUBPROTOCOLS), None)
        if selected:
            selected_canon = selected.lower()
        else:
            selected_canon = None

        if request.query.get("awps_connection_id"):
            return await self._recover(request, hub, selected)

        token = request.query.get("access_token")
        if not token:
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                token = auth[7:].strip()
        if not token:
            return web.Response(status=401, text="Missing access token.")
        try:
            claims_raw = verify_client_token(token, self.cs.key_bytes, hub_raw, self._endpoints(request))
        except TokenError as exc:
            return web.Response(status=401, text=str(exc))

        token_groups = claim_list(claims_raw, "webpubsub.group")
        if any(not _valid_group(g) for g in token_groups):
            return web.Response(status=400, text="The token contains an invalid group name.")
        claims = {k: claim_list(claims_raw, k) for k in claims_raw}
        user_id = claims_raw.get("sub")
        user_id = str(user_id) if user_id is not None else None
        roles = claim_list(claims_raw, "role")
        headers: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            headers.setdefault(k, []).append(v)
        query: dict[str, list[str]] = {}
        for k, v in request.query.items():
            query.setdefault(k, []).append(v)

        connection_id = uuid.uuid4().hex
        conn = _Connection(
            hub,
            connection_id,
            user_id,
            selected_canon,
            roles,
            claims,
            headers,
            connection_signature(self.cs.key_bytes, connection_id),
        )
        connect_req = ConnectRequest(
            context=conn.context("system", "connect"),
            claims=claims,
            query=query,
            subprotocols=offered,
            client_certificates=[],
        )
        try:
            async with asyncio.timeout(self.upstream_timeout):
                result = await self.sink.connect(hub, connect_req)
        except TimeoutError:
            log.warning("connect handler timed out for hub %s", hub)
            return web.Response(status=500, text="The connect event handler timed out.")
        except Exception:
            log.exception("connect handler failed for hub %s", hub)
            return web.Response(status=500, text="The connect event handler failed.")
        if result is None:
            result = ConnectResult(ok=True)
        if not result.ok:
            status = {
                "unauthorized": 401,
                "forbidden": 403,
                "usererror": 400,
                "servererror": 500,
            }.get((result.error_code or "").lower(), 500)
            return web.Response(status=status, text=result.error_message or "Connection refused.")

        if result.user_id:
            conn.user_id = result.user_id
        conn.roles.update(result.roles or ())
        if result.states:
            conn.states.update(result.states)
        extra_groups = [g for g in (result.groups or ()) if _valid_group(g)]
        protocols: tuple[str, ...] = ()
        if selected:
            protocols = (selected,)
        elif result.subprotocol and result.subprotocol in offered:
            protocols = (result.subprotocol,)
            conn.subprotocol = result.subprotocol

        ws = web.WebSocketResponse(
            protocols=protocols, max_msg_size=self.max_message_bytes, autoping=True, heartbeat=None
        )
        try:
            if self.handshake_delay > 0:
                await asyncio.sleep(self.handshake_delay)
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            return ws

        h = self._hub(hub)
        h.connections[connection_id] = conn
        if conn.user_id is not None:
            h.users.setdefault(conn.user_id, set()).add(connection_id)
            extra_groups.extend(h.user_groups.get(conn.user_id, ()))
        for g in [*token_groups, *extra_groups]:
            self._join(h, conn, g)
        transport = self._attach(conn, ws, request)
        if not conn.raw:
            hello: dict[str, Any] = {
                "type": "system",
                "event": "connected",
                "userId": conn.user_id,
                "connectionId": connection_id,
            }
            if conn.reliable:
                hello["reconnectionToken"] = conn.reconnection_token
            transport.enqueue(_dumps(hello), control=True)
        conn.connected_task = self._spawn(self._notify_connected(conn))
        await self._run(conn, transport)
        return ws

    async def _recover(self, request: web.Request, hub: str, selected: str | None) -> web.StreamResponse:
        """Resume a reliable connection: same id, groups and buffer; no connect/connected events."""
        cid = request.query.get("awps_connection_id", "")
        rtoken = request.query.get("awps_reconnection_token", "")
        protocols = (selected,) if selected else ()
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=self.max_message_bytes)
        if self.handshake_delay > 0:
            await asyncio.sleep(self.handshake_delay)
        await ws.prepare(request)
        h = self._hubs.get(hub)
        conn = h.connections.get(cid) if h else None
        if (
            conn is None
            or conn.closed
            or not conn.reliable
            or conn.reconnection_token is None
            or not secrets.compare_digest(conn.reconnection_token.encode(), rtoken.encode("utf-8", "replace"))
        ):
            # 1008 tells the SDKs the session is gone: they stop recovering and reconnect afresh.
            await ws.close(code=CLOSE_POLICY_VIOLATION, message=b"The connection could not be recovered.")
            return ws
        if conn.expiry:
            conn.expiry.cancel()
            conn.expiry = None
        transport = self._attach(conn, ws, request)
        for frame in conn.unacked.values():
            transport.enqueue(frame, force=True)
        log.debug("recovered %s, replayed %d", cid, len(conn.unacked))
        await self._run(conn, transport)
        return ws

    def _attach(self, conn: _Connection, ws: web.WebSocketResponse, request: web.Request) -> _Transport:
        previous = conn.transport
        conn.generation += 1
        transport = _Transport(ws, request, self.outbound_queue_limit, conn.generation)
        conn.transport = transport
        if previous is not None:
            previous.abort(CLOSE_POLICY_VIOLATION, "Superseded by a recovered socket.", recoverable=True)
        return transport

    async def _run(self, conn: _Connection, transport: _Transport) -> None:
        """Read frames until the socket ends, then detach (reliable) or remove the connection.

        Only a close frame with 1000 from the client ends a reliable connection at once; a lost
        TCP connection (no close frame) or any other code leaves it recoverable, as in the service.
        """
        ws = transport.ws
        reason: str | None = None
        try:
            while not (conn.closed or conn.transport is not transport):
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    if conn.raw:
                        await self._raw_event(conn, transport, _Data("text", msg.data))
                    else:
                        await self._on_frame(conn, transport, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    if conn.raw:
                        await self._raw_event(conn, transport, _Data("binary", bytes(msg.data)))
                    else:
                        self._violation(
                            conn,
                            transport,
                            CLOSE_UNSUPPORTED_DATA,
                            "The JSON subprotocol requires text messages.",
                        )
                elif msg.type == WSMsgType.CLOSE:
                    if msg.data == CLOSE_NORMAL and not transport.closing:
                        transport.recoverable = False  # the client said goodbye
                        reason = msg.extra or "Connection closed by the client."
                    break
                elif msg.type == WSMsgType.ERROR:
                    too_big = ws.close_code == CLOSE_TOO_BIG
                    reason = "The client message is too large." if too_big else f"WebSocket error: {msg.data}"
                    transport.recoverable = not too_big and conn.reliable
                    break
                else:  # CLOSING / CLOSED: we closed it, or the TCP connection is gone
                    break
        except Exception:  # never let one client's bug reach the others
            log.exception("connection %s failed", conn.connection_id)
            if not conn.closed and conn.transport is transport:
                self._violation(conn, transport, CLOSE_INTERNAL_ERROR, "Internal server error.")
        finally:
            await self._drain_writer(transport)
            self._detach(conn, transport, reason)

    async def _drain_writer(self, transport: _Transport) -> None:
        close_queued = transport.closing
        transport.closing = True
        if not transport.writer.done():
            if close_queued:
                # Let a queued close (disconnected message + close frame) finish, briefly.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(1):
                        await asyncio.shield(transport.writer)
            transport.writer.cancel()
        if not transport.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                async with asyncio.timeout(1):
                    await transport.ws.close()

    def _detach(self, conn: _Connection, transport: _Transport, reason: str | None) -> None:
        if conn.transport is not transport:
            return  # superseded by a newer socket: nothing to do
        conn.transport = None
        if conn.closed:
            return
        if conn.reliable and transport.recoverable:
            loop = asyncio.get_running_loop()
            generation = transport.generation
            conn.expiry = loop.call_later(self.recovery_window, self._expire, conn, generation)
            return
        self._remove(conn, reason or "Connection closed.")

    def _expire(self, conn: _Connection, generation: int) -> None:
        if conn.closed or conn.transport is not None or conn.generation != generation:
            return
        self._remove(conn, "The connection was not recovered in time.")

    def _remove(self, conn: _Connection, reason: str | None) -> None:
        """Forget the connection everywhere and fire ``disconnected`` (after ``connected``)."""
        if conn.closed:
            return
        conn.closed = True
        if conn.expiry:
            conn.expiry.cancel()
            conn.expiry = None
        h = self._hubs.get(conn.hub)
        if h is not None:
            h.connections.pop(conn.connection_id, None)
            for g in list(conn.groups):
                self._leave(h, conn, g)
            if conn.user_id is not None:
                ids = h.users.get(conn.user_id)
                if ids is not None:
                    ids.discard(conn.connection_id)
                    if not ids:
                        del h.users[conn.user_id]
        conn.unacked.clear()
        conn.unacked_bytes = 0
        self._spawn(self._notify_disconnected(conn, reason))

    def _close(self, conn: _Connection, reason: str, *, code: int = CLOSE_NORMAL) -> None:
        """Server-side close: disconnected message, close frame, connection removed."""
        transport = conn.transport
        if transport is not None and not conn.raw:
            transport.enqueue(_dumps({"type": "system", "event": "disconnected", "message": reason}), force=True)
        if transport is not None:
            transport.close_after_flush(code, reason, recoverable=False)
        self._remove(conn, reason)

    def _violation(self, conn: _Connection, transport: _Transport, code: int, reason: str) -> None:
        log.info("closing %s: %s", conn.connection_id, reason)
        if not conn.raw:
            transport.enqueue(_dumps({"type": "system", "event": "disconnected", "message": reason}), force=True)
        transport.close_after_flush(code, reason, recoverable=False)
        self._remove(conn, reason)

    async def _notify_connected(self, conn: _Connection) -> None:
        try:
            async with asyncio.timeout(self.upstream_timeout):
                await self.sink.connected(conn.hub, conn.context("system", "connected"))
        except Exception:
            log.exception("connected handler failed for %s", conn.connection_id)

    async def _notify_disconnected(self, conn: _Connection, reason: str | None) -> None:
        if conn.connected_task is not None and not conn.connected_task.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(conn.connected_task)
        try:
            async with asyncio.timeout(self.upstream_timeout):
                await self.sink.disconnected(conn.hub, conn.context("system", "disconnected"), reason)
        except Exception:
            log.exception("disconnected handler failed for %s", conn.connection_id)

    # ------------------------------------------------------------------ delivery

    def _deliver(self, conn: _Connection, out: _Out) -> None:
        """Send one data message to one connection without ever awaiting the network."""
        if conn.closed:
            return
        transport = conn.transport
        if conn.raw:
            if transport is not None and not transport.enqueue(out.raw()):
                self._slow(conn, transport)
            return
        if not conn.reliable:
            if transport is not None and not transport.enqueue(out.frame(None)):
                self._slow(conn, transport)
            return
        frame = out.frame(conn.next_sequence_id + 1)
        if (
            len(conn.unacked) >= self.reliable_buffer_messages
            or conn.unacked_bytes + len(frame) > self.reliable_buffer_bytes
        ):
            reason = "The reliable message buffer is full."
            if transport is not None:
                transport.abort(CLOSE_POLICY_VIOLATION, reason, recoverable=False)
            self._remove(conn, reason)
            return
        conn.next_sequence_id += 1
        conn.unacked[conn.next_sequence_id] = frame
        conn.unacked_bytes += len(frame)
        if transport is not None and not transport.enqueue(frame):
            self._slow(conn, transport)

    def _slow(self, conn: _Connection, transport: _Transport) -> None:
        reason = "The outbound message queue is full."
        log.warning("closing slow connection %s", conn.connection_id)
        transport.abort(CLOSE_POLICY_VIOLATION, reason, recoverable=False)
        self._remove(conn, reason)

    def _send_control(self, conn: _Connection, transport: _Transport, obj: dict[str, Any]) -> None:
        """Acks/pongs go to the connection's current socket (it may have been recovered meanwhile)."""
        current = conn.transport
        if current is not None and not conn.closed and not current.enqueue(_dumps(obj), control=True):
            self._slow(conn, current)  # pinging or sending without ever reading

    def _ack(
        self,
        conn: _Connection,
        transport: _Transport,
        ack_id: int | None,
        error: tuple[str, str] | None = None,
    ) -> None:
        if ack_id is None:
            return
        frame: dict[str, Any] = {"type": "ack", "ackId": ack_id, "success": error is None}
        if error is not None:
            frame["error"] = {"name": error[0], "message": error[1]}
        if self.ack_delay > 0:
            asyncio.get_running_loop().call_later(self.ack_delay, self._send_control, conn, transport, frame)
        else:
            self._send_control(conn, transport, frame)

    def _join(self, h: _Hub, conn: _Connection, group: str) -> None:
        conn.groups.add(group)
        h.groups.setdefault(group, set()).add(conn.connection_id)

    def _leave(self, h: _Hub, conn: _Connection, group: str) -> None:
        conn.groups.discard(group)
        members = h.groups.get(group)
        if members is not None:
            members.discard(conn.connection_id)
            if not members:
                del h.groups[group]

    def _send_group(
        self, hub: str, group: str, out: _Out, excluded: Iterable[str] = (), sender: str | None = None
    ) -> None:
        h = self._hubs.get(hub.lower())
        if h is None:
            return
        skip = set(excluded)
        if sender:
            skip.add(sender)
        for cid in list(h.groups.get(group, ())):
            conn = h.connections.get(cid)
            if conn is not None and cid not in skip:
                self._deliver(conn, out)

    # ------------------------------------------------------------------ client frames

    async def _on_frame(self, conn: _Connection, transport: _Transport, text: str) -> None:
        try:
            msg = _loads(text)
        except ValueError:
            self._violation(
                conn,
                transport,
                CLOSE_INVALID_PAYLOAD,
                "The client message is not a valid JSON protocol message.",
            )
            return
        if not isinstance(msg, dict):
            self._violation(conn, transport, CLOSE_INVALID_PAYLOAD, "Expected a JSON object.")
            return
        try:
            ack_id = _optional_uint(msg, "ackId")
        except _BadFrame as exc:
            self._violation(conn, transport, CLOSE_INVALID_PAYLOAD, str(exc))
            return
        try:
            await self._dispatch(conn, transport, msg, ack_id)
        except _BadFrame as exc:
            if ack_id is not None:
                # With an ackId the client can be told what was wrong and keep its connection.
                self._ack(conn, transport, ack_id, ("BadRequest", str(exc)))
            else:
                self._violation(conn, transport, CLOSE_INVALID_PAYLOAD, f"Invalid message: {exc}")

    async def _dispatch(
        self, conn: _Connection, transport: _Transport, msg: dict[str, Any], ack_id: int | None
    ) -> None:
        kind = msg.get("type")
        if not isinstance(kind, str):
            raise _BadFrame("Missing required property 'type'.")
        kind = kind.lower()
        if kind == "ping":
            self._send_control(conn, transport, {"type": "pong"})
            return
        if kind == "sequenceack":
            seq = _optional_uint(msg, "sequenceId")
            if seq is None:
                raise _BadFrame("Missing required property 'sequenceId'.")
            conn.acknowledge(seq)
            return
        if kind not in ("joingroup", "leavegroup", "sendtogroup", "event"):
            raise _BadFrame(f"Unknown 'type': {msg.get('type')}.")

        if kind == "event":
            event = msg.get("event")
            if not isinstance(event, str) or not EVENT_NAME_RE.match(event):
                raise _BadFrame("The event name is invalid.")
            data = _parse_client_data(msg)
            if ack_id is not None and ack_id in conn.ack_ids:
                self._ack(
                    conn,
                    transport,
                    ack_id,
                    ("Duplicate", f"Message with ack-id: {ack_id} has been processed"),
                )
                return
            await self._user_event(conn, transport, event, data, ack_id)
            return

        group = msg.get("group")
        if not _valid_group(group):
            raise _BadFrame("The group name is invalid.")
        assert isinstance(group, str)
        data = _parse_client_data(msg) if kind == "sendtogroup" else None
        no_echo = msg.get("noEcho", False)
        if not isinstance(no_echo, bool):
            raise _BadFrame("Expected 'noEcho' to be a boolean.")
        if ack_id is not None and ack_id in conn.ack_ids:
            self._ack(conn, transport, ack_id, ("Duplicate", f"Message with ack-id: {ack_id} has been processed"))
            return
        h = self._hub(conn.hub)
        if kind in ("joingroup", "leavegroup"):
            action = "join" if kind == "joingroup" else "leave"
            if not conn.can_join_leave(group):
                self._ack(
                    conn,
                    transport,
                    ack_id,
                    ("Forbidden", f"The client does not have permission to {action} group '{group}'."),
                )
                return
            if kind == "joingroup":
                self._join(h, conn, group)
            else:
                self._leave(h, conn, group)
        else:
            if not conn.can_send_to(group):
                self._ack(
                    conn,
                    transport,
                    ack_id,
                    ("Forbidden", f"The client does not have permission to send to group '{group}'."),
                )
                return
            assert data is not None
            out = _Out(data, group=group, from_user_id=conn.user_id)
            self._send_group(conn.hub, group, out, sender=conn.connection_id if no_echo else None)
        if ack_id is not None:
            conn.remember_ack(ack_id)
        self._ack(conn, transport, ack_id)

    async def _call_user_event(
        self, conn: _Connection, event: str, data: _Data
    ) -> tuple[UserEventResult | None, tuple[str, str] | None]:
        """Run the upstream handler; returns (result, ack error)."""
        try:
            async with asyncio.timeout(self.upstream_timeout):
                result = await self.sink.user_event(
                    conn.hub, event, conn.context("user", event), data.value, data.data_type
                )
        except TimeoutError:
            return None, ("Timeout", "The event handler did not answer in time.")
        except Exception as exc:
            log.exception("user event %s failed for %s", event, conn.connection_id)
            return None, ("InternalServerError", f"The event handler failed: {type(exc).__name__}")
        if result is None:
            return UserEventResult(ok=True), None
        if not result.ok:
            name = {"unauthorized": "Forbidden", "forbidden": "Forbidden", "usererror": "BadRequest"}.get(
                (result.error_code or "").lower(), "InternalServerError"
            )
            return result, (name, result.error_message or "The event handler returned an error.")
        return result, None

    async def _user_event(
        self, conn: _Connection, transport: _Transport, event: str, data: _Data, ack_id: int | None
    ) -> None:
        result, error = await self._call_user_event(conn, event, data)
        if conn.closed:
            return
        error = self._reply(conn, result, error, raw=False)
        if error is None and ack_id is not None:
            conn.remember_ack(ack_id)
        self._ack(conn, transport, ack_id, error)

    def _reply(self, conn: _Connection, result: UserEventResult | None, error: tuple[str, str] | None,
               raw: bool) -> tuple[str, str] | None:
        """Applies a handler's states and sends its reply data; a reply that cannot be serialised
        becomes the event's error (serialised before sending, so only this event fails)."""
        if result is not None and result.states:
            conn.states.update(result.states)
        if error is None and result is not None and result.data is not None:
            try:
                reply = _Out(_result_data(result.data, result.data_type))
                reply.raw() if raw else reply.frame(None)
            except (ValueError, TypeError) as exc:
                return ("InternalServerError", f"The event handler returned invalid data: {exc}")
            self._deliver(conn, reply)
        return error

    async def _raw_event(self, conn: _Connection, transport: _Transport, data: _Data) -> None:
        """Simple WebSocket clients: every frame is the user event ``message``.

        They have no acks, so (as the service documents) a failed ``message`` handler drops them.
        """
        result, error = await self._call_user_event(conn, "message", data)
        if conn.closed:
            return
        error = self._reply(conn, result, error, raw=True)
        if error is not None:
            code = CLOSE_POLICY_VIOLATION if error[0] in ("Forbidden", "BadRequest") else CLOSE_INTERNAL_ERROR
            self._close(conn, f"The message event handler failed: {error[1]}", code=code)

    # ------------------------------------------------------------------ REST data plane

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._rest_inner(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("REST %s %s failed", request.method, request.path)
            return _error(500, "InternalServerError", "Internal server error.")

    async def _rest_inner(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        segments = [urllib.parse.unquote(s) for s in raw_path.split("/")[3:]]  # after /api/hubs/
        if not segments or not segments[0]:
            return _error(404, "NotFound", "Unknown route.")
        hub_raw, rest = segments[0], segments[1:]
        if rest and rest[-1] == "":
            rest = rest[:-1]
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return _error(401, "Unauthorized", "Missing bearer token.")
        try:
            verify_rest_token(auth[7:].strip(), self.cs.key_bytes, str(request.url), self._endpoints(request))
        except TokenError as exc:
            return _error(401, "Unauthorized", str(exc))
        if not HUB_NAME_RE.match(hub_raw):
            return _error(400, "BadRequest", "Invalid hub name.")
        hub = hub_raw.lower()
        method = request.method.upper()
        route = self._match(method, rest)
        if route is None:
            return _error(404, "NotFound", f"Unknown route {method} {raw_path}.")
        handler, args = route
        return await handler(request, hub, *args)

    def _match(
        self, method: str, rest: list[str]
    ) -> tuple[Callable[..., Awaitable[web.StreamResponse]], list[str]] | None:
        n = len(rest)
        table: list[tuple[str, tuple[str | None, ...], Callable[..., Awaitable[web.StreamResponse]]]] = [
            ("POST", (":send",), self._r_send_all),
            ("POST", (":closeConnections",), self._r_close_all),
            ("POST", (":generateToken",), self._r_generate_token),
            ("POST", ("groups", None, ":send"), self._r_send_group),
            ("POST", ("groups", None, ":closeConnections"), self._r_close_group),
            ("HEAD", ("groups", None), self._r_group_exists),
            ("GET", ("groups", None, "connections"), self._r_list_group),
            ("PUT", ("groups", None, "connections", None), self._r_add_to_group),
            ("DELETE", ("groups", None, "connections", None), self._r_remove_from_group),
            ("HEAD", ("connections", None), self._r_connection_exists),
            ("DELETE", ("connections", None), self._r_close_connection),
            ("POST", ("connections", None, ":send"), self._r_send_connection),
            ("DELETE", ("connections", None, "groups"), self._r_remove_connection_all_groups),
            ("HEAD", ("users", None), self._r_user_exists),
            ("POST", ("users", None, ":send"), self._r_send_user),
            ("POST", ("users", None, ":closeConnections"), self._r_close_user),
            ("PUT", ("users", None, "groups", None), self._r_add_user_to_group),
            ("DELETE", ("users", None, "groups", None), self._r_remove_user_from_group),
            ("DELETE", ("users", None, "groups"), self._r_remove_user_all_groups),
            ("PUT", ("permissions", None, "connections", None), self._r_grant),
            ("DELETE", ("permissions", None, "connections", None), self._r_revoke),
            ("HEAD", ("permissions", None, "connections", None), self._r_check_permission),
        ]
        for m, pattern, handler in table:
            if len(pattern) != n:
                continue
            if m != method:
                continue
            args: list[str] = []
            for want, got in zip(pattern, rest, strict=True):
                if want is None:
                    args.append(got)
                elif want.lower() != got.lower():
                    break
            else:
                return handler, args
        return None

    async def _body(self, request: web.Request) -> _Data | web.Response:
        """Read a message body (413 when too large) and type it by Content-Type."""
        length = request.content_length
        if length is not None and length > self.max_message_bytes:
            return _error(413, "PayloadTooLarge", f"Message larger than {self.max_message_bytes} bytes.")
        body = await request.content.read(self.max_message_bytes + 1)
        if len(body) > self.max_message_bytes:
            return _error(413, "PayloadTooLarge", f"Message larger than {self.max_message_bytes} bytes.")
        ctype = (request.content_type or "").lower()
        if ctype in ("application/json", "text/json") or ctype.endswith("+json"):
            try:
                return _Data("json", _loads(body.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                return _error(400, "BadRequest", "The body is not valid JSON.")
        if ctype == "text/plain":
            try:
                return _Data("text", body.decode(request.charset or "utf-8"))
            except (UnicodeDecodeError, LookupError):
                return _error(400, "BadRequest", "The body is not valid text.")
        if ctype in ("application/octet-stream", ""):
            return _Data("binary", body)
        return _error(415, "UnsupportedMediaType", f"Unsupported Content-Type {ctype!r}.")

    def _filter_unsupported(self, request: web.Request) -> web.Response | None:
        if request.query.get("filter"):
            return _error(400, "BadRequest", "OData 'filter' is not supported by the twin gateway.")
        return None

    async def _r_send_all(self, request: web.Request, hub: str) -> web.StreamResponse:
        bad = self._filter_unsupported(request)
        if bad:
            return bad
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        excluded = set(request.query.getall("excluded", []))
        h = self._hubs.get(hub)
        if h is not None:
            out = _Out(data)
            for cid, conn in list(h.connections.items()):
                if cid not in excluded:
                    self._deliver(conn, out)
        return web.Response(status=202)

    async def _r_send_group(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        bad = self._filter_unsupported(request)
        if bad:
            return bad
        if not _valid_group(group):
            return _error(400, "BadRequest", "Invalid group name.")
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        self._send_group(hub, group, _Out(data, group=group), request.query.getall("excluded", []))
        return web.Response(status=202)

    async def _r_send_connection(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        conn = self._conn(hub, cid)
        if conn is not None:
            self._deliver(conn, _Out(data))
        return web.Response(status=202)

    async def _r_send_user(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        bad = self._filter_unsupported(request)
        if bad:
            return bad
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        h = self._hubs.get(hub)
        if h is not None:
            out = _Out(data)
            for cid in list(h.users.get(user, ())):
                conn = h.connections.get(cid)
                if conn is not None:
                    self._deliver(conn, out)
        return web.Response(status=202)

    def _conn(self, hub: str, cid: str) -> _Connection | None:
        h = self._hubs.get(hub)
        return h.connections.get(cid) if h else None

    def _reason(self, request: web.Request) -> str:
        return request.query.get("reason") or "Closed by the server."

    async def _r_close_all(self, request: web.Request, hub: str) -> web.StreamResponse:
        excluded = set(request.query.getall("excluded", []))
        h = self._hubs.get(hub)
        for cid, conn in list(h.connections.items()) if h else []:
            if cid not in excluded:
                self._close(conn, self._reason(request))
        return web.Response(status=204)

    def _close_members(self, request: web.Request, hub: str, members: str, key: str) -> web.StreamResponse:
        """Closes the connections of one group or one user (`members` names the index), minus `excluded`."""
        excluded = set(request.query.getall("excluded", []))
        h = self._hubs.get(hub)
        if h is not None:
            for cid in list(getattr(h, members).get(key, ())):
                conn = h.connections.get(cid)
                if conn is not None and cid not in excluded:
                    self._close(conn, self._reason(request))
        return web.Response(status=204)

    async def _r_close_group(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        return self._close_members(request, hub, "groups", group)

    async def _r_close_user(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        return self._close_members(request, hub, "users", user)

    async def _r_close_connection(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        conn = self._conn(hub, cid)
        if conn is not None:
            self._close(conn, self._reason(request))
        return web.Response(status=204)

    async def _r_generate_token(self, request: web.Request, hub: str) -> web.StreamResponse:
        try:
            minutes = int(request.query.get("minutesToExpire", "60"))
        except ValueError:
            return _error(400, "BadRequest", "minutesToExpire must be an integer.")
        audience = f"{self.cs.endpoint}/client/hubs/{hub}"
        token = sign_client_token(
            self.cs.key_bytes,
            audience,
            user_id=request.query.get("userId"),
            roles=request.query.getall("role", []),
            groups=request.query.getall("group", []),
            minutes_to_expire=minutes,
        )
        return web.json_response({"token": token})

    async def _r_group_exists(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        h = self._hubs.get(hub)
        return web.Response(status=200 if h and h.groups.get(group) else 404)

    async def _r_list_group(self, request: web.Request, hub: str, group: str) -> web.StreamResponse:
        h = self._hubs.get(hub)
        value = []
        for cid in sorted(h.groups.get(group, ())) if h else []:
            conn = h.connections.get(cid) if h else None
            if conn is not None:
                value.append({"connectionId": cid, "userId": conn.user_id})
        return web.json_response({"value": value, "nextLink": None})

    async def _r_add_to_group(self, request: web.Request, hub: str, group: str, cid: str) -> web.StreamResponse:
        if not _valid_group(group):
            return _error(400, "BadRequest", "Invalid group name.")
        conn = self._conn(hub, cid)
        if conn is None:
            return _error(404, "NotFound", f"Connection {cid} does not exist.")
        self._join(self._hub(hub), conn, group)
        return web.Response(status=200)

    async def _r_remove_from_group(self, request: web.Request, hub: str, group: str, cid: str) -> web.StreamResponse:
        conn = self._conn(hub, cid)
        if conn is not None:
            self._leave(self._hub(hub), conn, group)
        return web.Response(status=204)

    async def _r_connection_exists(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        return web.Response(status=200 if self._conn(hub, cid) is not None else 404)

    async def _r_remove_connection_all_groups(self, request: web.Request, hub: str, cid: str) -> web.StreamResponse:
        conn = self._conn(hub, cid)
        if conn is not None:
            h = self._hub(hub)
            for g in list(conn.groups):
                self._leave(h, conn, g)
        return web.Response(status=204)

    async def _r_user_exists(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        h = self._hubs.get(hub)
        return web.Response(status=200 if h and h.users.get(user) else 404)

    async def _r_add_user_to_group(self, request: web.Request, hub: str, user: str, group: str) -> web.StreamResponse:
        if not _valid_group(group):
            return _error(400, "BadRequest", "Invalid group name.")
        h = self._hub(hub)
        h.user_groups.setdefault(user, set()).add(group)  # new connections of the user join too
        for cid in list(h.users.get(user, ())):
            conn = h.connections.get(cid)
            if conn is not None:
                self._join(h, conn, group)
        return web.Response(status=200)

    async def _r_remove_user_from_group(
        self, request: web.Request, hub: str, user: str, group: str
    ) -> web.StreamResponse:
        h = self._hub(hub)
        h.user_groups.get(user, set()).discard(group)
        for cid in list(h.users.get(user, ())):
            conn = h.connections.get(cid)
            if conn is not None:
                self._leave(h, conn, group)
        return web.Response(status=204)

    async def _r_remove_user_all_groups(self, request: web.Request, hub: str, user: str) -> web.StreamResponse:
        h = self._hub(hub)
        h.user_groups.pop(user, None)
        for cid in list(h.users.get(user, ())):
            conn = h.connections.get(cid)
            if conn is not None:
                for g in list(conn.groups):
                    self._leave(h, conn, g)
        return web.Response(status=204)

    def _role(self, request: web.Request, permission: str) -> str | web.Response:
        names = {"sendtogroup": ROLE_SEND_TO_GROUP, "joinleavegroup": ROLE_JOIN_LEAVE}
        base = names.get(permission.lower())
        if base is None:
            return _error(400, "BadRequest", f"Unknown permission {permission!r}.")
        target = request.query.get("targetName")
        return f"{base}.{target}" if target else base

    async def _r_grant(self, request: web.Request, hub: str, permission: str, cid: str) -> web.StreamResponse:
        role = self._role(request, permission)
        if isinstance(role, web.Response):
            return role
        conn = self._conn(hub, cid)
        if conn is None:
            return _error(404, "NotFound", f"Connection {cid} does not exist.")
        conn.roles.add(role)
        return web.Response(status=200)

    async def _r_revoke(self, request: web.Request, hub: str, permission: str, cid: str) -> web.StreamResponse:
        role = self._role(request, permission)
        if isinstance(role, web.Response):
            return role
        conn = self._conn(hub, cid)
        if conn is not None:
            conn.roles.discard(role)
        return web.Response(status=204)

    async def _r_check_permission(
        self, request: web.Request, hub: str, permission: str, cid: str
    ) -> web.StreamResponse:
        role = self._role(request, permission)
        if isinstance(role, web.Response):
            return role
        conn = self._conn(hub, cid)
        return web.Response(status=200 if conn is not None and role in conn.roles else 404)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


# --------------------------------------------------------------------------- manual testing


class EchoSink:
    """Accepts everyone (joinLeave/send roles) and echoes user events back; for manual testing."""

    async def connect(self, hub: str, request: ConnectRequest) -> ConnectResult:
        return ConnectResult(ok=True, roles=[ROLE_JOIN_LEAVE, ROLE_SEND_TO_GROUP])

    async def connected(self, hub: str, context: ConnectionContext) -> None:
        log.info("connected %s/%s user=%s", hub, context.connection_id, context.user_id)

    async def user_event(
        self, hub: str, event: str, context: ConnectionContext, data: Any, data_type: str
    ) -> UserEventResult:
        return UserEventResult(ok=True, data={"echo": event, "data": data if data_type != "binary" else None})

    async def disconnected(self, hub: str, context: ConnectionContext, reason: str | None) -> None:
        log.info("disconnected %s/%s: %s", hub, context.connection_id, reason)


def main(argv: list[str] | None = None) -> None:
    """``python -m babelroom.twin.gateway --port N``: a standalone gateway with an echo sink."""
    parser = argparse.ArgumentParser(description="Standalone Web PubSub twin gateway (echo sink).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--hub", default="rooms")
    parser.add_argument("--connection-string", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cs = args.connection_string or (
        f"Endpoint=http://{args.host}:{args.port};AccessKey=twin-local-access-key-0123456789abcdef;Version=1.0;"
    )
    gateway = Gateway(cs, EchoSink())
    app = web.Application()
    gateway.add_routes(app)
    parsed = parse_connection_string(cs)
    token = sign_client_token(
        parsed.key_bytes, f"{parsed.endpoint}/client/hubs/{args.hub}", user_id="manual", minutes_to_expire=600
    )
    print(f"connection string: {cs}")
    print(f"client url: ws://{args.host}:{args.port}/client/hubs/{args.hub}?access_token={token}")
    print(f"started {time.strftime('%H:%M:%S')}")
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
