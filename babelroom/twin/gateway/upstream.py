"""The upstream event sink: the types the gateway hands its event handler, and the handlers.

The gateway calls an :class:`EventSink` the way the service calls its event handler: ``connect``
(blocking, can refuse), ``connected``, user events (blocking, can answer) and ``disconnected``.
Two sinks exist: the twin host's in-process ``FunctionEventSink`` (babelroom/twin/events.py)
and :class:`HttpUpstream`, which speaks the real CloudEvents HTTP upstream protocol to a
function host (``func start``) so the twin can stand in for the service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from .wire import ROLE_JOIN_LEAVE, ROLE_SEND_TO_GROUP

log = logging.getLogger("babelroom.twin.gateway")



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

