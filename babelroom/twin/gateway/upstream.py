"""The upstream event sink: the types the gateway hands its event handler, and the handlers.

The gateway calls an :class:`EventSink` the way the service calls its event handler: ``connect``
(blocking, can refuse), ``connected``, user events (blocking, can answer) and ``disconnected``.
:class:`HttpUpstream` speaks the real CloudEvents HTTP upstream protocol to a function host: the
twin host's own `/runtime/webhooks/webpubsub`, or `func start`'s, so the twin stands in for the
service. Tests that drive the extension without a socket subclass it (twin/webpubsub_trigger.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from babelroom.twin.wpsauth import event_signature

from .wire import ROLE_JOIN_LEAVE, ROLE_SEND_TO_GROUP

log = logging.getLogger("babelroom.twin.gateway")


@dataclass
class ConnectionContext:
    """What the service puts in the ``ce-*`` headers of every upstream event.

    ``event_type`` is ``"system"`` (connect/connected/disconnected) or ``"user"``; ``signature`` is
    ``sha256=<hex HMAC of connection_id with the access key>``; ``headers`` are the WebSocket
    upgrade request's headers; ``states`` are the connection states set by earlier responses;
    ``subprotocol`` is the one the client uses (``ce-subprotocol``).
    """

    hub: str
    connection_id: str
    user_id: str | None
    event_type: str
    event_name: str
    signature: str | None = None
    headers: dict[str, list[str]] | None = None
    states: dict[str, Any] = field(default_factory=dict)
    subprotocol: str | None = None


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
    anything else -> InternalServerError) and ``error_message``. ``states``, when not None,
    replace the connection states (as a ``ce-connectionState`` response header does).
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


# --------------------------------------------------------------------------- CloudEvents HTTP upstream


_ERROR_CODES = {400: "userError", 401: "unauthorized", 403: "forbidden"}


class UpstreamValidationError(Exception):
    """The event handler did not allow this origin in the abuse-protection handshake."""


def encode_states(states: dict[str, Any]) -> str:
    """``ce-connectionState``: base64 of the states' JSON (the docs' ``base64(jsonString)``)."""
    return base64.b64encode(json.dumps(states, separators=(",", ":")).encode("utf-8")).decode("ascii")


def decode_states(value: str) -> dict[str, Any] | None:
    """States from a ``ce-connectionState`` response header; None when it is not base64 JSON object."""
    try:
        states = json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    except (ValueError, binascii.Error):
        return None
    return states if isinstance(states, dict) else None


class HttpUpstream:
    """An :class:`EventSink` that calls a webhook the way Azure Web PubSub calls its event handler.

    Protocol: "CloudEvents extension for Azure Web PubSub event handler with HTTP protocol"
    (<https://learn.microsoft.com/azure/azure-web-pubsub/reference-cloud-events>), CloudEvents binary
    mode: ``ce-specversion``/``ce-type``/``ce-source``/``ce-id``/``ce-time`` plus the Web PubSub
    attributes ``ce-userId``, ``ce-connectionId``, ``ce-hub``, ``ce-eventName``, ``ce-subprotocol``,
    ``ce-connectionState`` and ``ce-signature``. Before the first event it performs the CloudEvents
    webhook abuse-protection handshake (``OPTIONS`` with ``WebHook-Request-Origin``; the target
    must answer ``WebHook-Allowed-Origin: *`` or the origin) and refuses to deliver otherwise.

    ``url`` is e.g. ``http://127.0.0.1:7071/runtime/webhooks/webpubsub`` (the Functions extension's
    endpoint under ``func start``); ``origin`` is what the service puts in
    ``WebHook-Request-Origin`` (its host name, which the extension checks against its connection
    string's endpoint); ``access_keys`` sign ``ce-signature`` (primary, then secondary).
    """

    def __init__(self, url: str, access_keys: list[str], *, origin: str = "127.0.0.1",
                 timeout: float = 60.0) -> None:
        if not access_keys:
            raise ValueError("HttpUpstream needs at least one access key")
        self.url = url
        self.access_keys = list(access_keys)
        self.origin = origin
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._validated = False
        self._validating: asyncio.Lock | None = None

    async def close(self) -> None:
        """Close the HTTP session (the app's cleanup)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def validate(self) -> None:
        """Abuse protection: ask once whether this origin may deliver; raise if not (retried next event)."""
        if self._validated:
            return
        if self._validating is None:
            self._validating = asyncio.Lock()
        async with self._validating:
            if self._validated:
                return
            headers = {"WebHook-Request-Origin": self.origin}
            async with self._http().options(self.url, headers=headers) as resp:
                allowed = [o.strip() for o in resp.headers.get("WebHook-Allowed-Origin", "").split(",")]
                if resp.status >= 300 or not ({"*", self.origin} & set(allowed)):
                    raise UpstreamValidationError(
                        f"{self.url} did not allow origin {self.origin!r} (status {resp.status}, "
                        f"WebHook-Allowed-Origin {resp.headers.get('WebHook-Allowed-Origin')!r})"
                    )
            self._validated = True

    def _headers(self, ce_type: str, context: ConnectionContext, content_type: str) -> dict[str, str]:
        headers = {
            "Content-Type": content_type,
            "WebHook-Request-Origin": self.origin,
            "ce-specversion": "1.0",
            "ce-type": ce_type,
            "ce-source": f"/hubs/{context.hub}/client/{context.connection_id}",
            "ce-id": uuid.uuid4().hex,
            "ce-time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "ce-signature": event_signature(self.access_keys, context.connection_id),
            "ce-connectionId": context.connection_id,
            "ce-hub": context.hub,
            "ce-eventName": context.event_name,
        }
        if context.user_id is not None:
            headers["ce-userId"] = context.user_id
        if context.subprotocol:
            headers["ce-subprotocol"] = context.subprotocol
        if context.states:
            headers["ce-connectionState"] = encode_states(context.states)
        return headers

    async def _post(self, ce_type: str, context: ConnectionContext, body: bytes,
                    content_type: str) -> tuple[int, str, bytes, dict[str, Any] | None]:
        """One event; returns (status, response content type, body, states from ce-connectionState)."""
        await self.validate()
        headers = self._headers(ce_type, context, content_type)
        async with self._http().post(self.url, data=body, headers=headers) as resp:
            data = await resp.read()
            raw_states = resp.headers.get("ce-connectionState")
            states = decode_states(raw_states) if raw_states else None
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, ctype, data, states

    async def connect(self, hub: str, request: ConnectRequest) -> ConnectResult:
        body = {"claims": request.claims, "query": request.query, "headers": request.context.headers or {},
                "subprotocols": request.subprotocols, "clientCertificates": request.client_certificates}
        status, _ctype, data, states = await self._post(
            "azure.webpubsub.sys.connect", request.context, json.dumps(body).encode("utf-8"),
            "application/json; charset=utf-8")
        return read_connect(status, data, states, request.context.user_id)

    async def connected(self, hub: str, context: ConnectionContext) -> None:
        status, _c, data, _s = await self._post("azure.webpubsub.sys.connected", context, b"{}",
                                                "application/json; charset=utf-8")
        if status >= 300:  # an unblocking event: the service only logs the failure
            log.warning("connected handler answered %d: %s", status, data[:200])

    async def disconnected(self, hub: str, context: ConnectionContext, reason: str | None) -> None:
        body = json.dumps({"reason": reason}).encode("utf-8")
        status, _c, data, _s = await self._post("azure.webpubsub.sys.disconnected", context, body,
                                                "application/json; charset=utf-8")
        if status >= 300:
            log.warning("disconnected handler answered %d: %s", status, data[:200])

    async def user_event(
        self, hub: str, event: str, context: ConnectionContext, data: Any, data_type: str
    ) -> UserEventResult:
        if data_type == "binary":
            body, ctype = bytes(data), "application/octet-stream"
        elif data_type == "text":
            body, ctype = str(data).encode("utf-8"), "text/plain; charset=utf-8"
        else:
            body, ctype = json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8"
        status, rtype, rbody, states = await self._post(f"azure.webpubsub.user.{event}", context, body, ctype)
        return read_user_event(status, rtype, rbody, states)


def _error(status: int, body: bytes) -> tuple[str, str]:
    code = _ERROR_CODES.get(status, "serverError")
    text = body.decode("utf-8", "replace").strip()[:512]
    if status == 404 and not text:  # the extension has no function for this hub/event
        text = "No event handler for this event (404)."
    return code, text or f"The event handler answered {status}."


def read_connect(status: int, data: bytes, states: dict[str, Any] | None, token_user: str | None) -> ConnectResult:
    """The service's reading of a connect answer: 2xx accepts (an empty body: with the token's
    identity and no groups), anything else refuses with the status's error code."""
    if status >= 300:
        code, message = _error(status, data)
        return ConnectResult(ok=False, error_code=code, error_message=message)
    answer: Any = {}
    if status != 204 and data.strip():
        try:
            answer = json.loads(data)
        except ValueError:
            return ConnectResult(ok=False, error_code="serverError",
                                 error_message="The connect event handler answered invalid JSON.")
    if not isinstance(answer, dict):
        return ConnectResult(ok=False, error_code="serverError",
                             error_message="The connect event handler answered a non-object.")
    return ConnectResult(ok=True, user_id=answer.get("userId") or token_user,
                         groups=[g for g in answer.get("groups") or [] if isinstance(g, str)],
                         roles=[r for r in answer.get("roles") or [] if isinstance(r, str)],
                         subprotocol=answer.get("subprotocol") or None, states=states)


def read_user_event(status: int, content_type: str, body: bytes, states: dict[str, Any] | None) -> UserEventResult:
    """The service's reading of a user-event answer: a body is the reply, in its content type's data type."""
    if status >= 300:
        code, message = _error(status, body)
        return UserEventResult(ok=False, error_code=code, error_message=message, states=states)
    if status == 204 or not body:
        return UserEventResult(ok=True, states=states)
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        return UserEventResult(ok=True, data=body, data_type="json", states=states)
    if mime.startswith("text/"):
        return UserEventResult(ok=True, data=body.decode("utf-8", "replace"), data_type="text", states=states)
    return UserEventResult(ok=True, data=body, data_type="binary", states=states)
