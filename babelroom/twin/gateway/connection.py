"""Connection state: one socket's bounded writer, the logical (recoverable) connection, the hubs'
membership indexes, and the delivery/recovery bookkeeping shared by the client endpoint and REST.

Reliable connections outlive their socket for ``recovery_window`` seconds; every data message
they get carries a ``sequenceId`` and stays buffered until the client's ``sequenceAck``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from babelroom.twin.wpsauth import ConnectionString

from .upstream import ConnectionContext, EventSink
from .wire import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CONTROL_ALLOWANCE,
    ROLE_JOIN_LEAVE,
    ROLE_SEND_TO_GROUP,
    SUBPROTOCOL_RELIABLE,
    SUPPORTED_SUBPROTOCOLS,
    Out,
    dumps,
)

log = logging.getLogger("babelroom.twin.gateway")


class Close:
    """Queue sentinel: flush what is queued before it, then send a close frame."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Transport:
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
        self.queue: asyncio.Queue[str | bytes | Close] = asyncio.Queue()
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
        self.queue.put_nowait(Close(code, reason))
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
                if isinstance(item, Close):
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


@dataclass
class InFlight:
    """One running event call: its outcome (None or the ack error) and how many resends wait for it."""

    outcome: asyncio.Future[tuple[str, str] | None]
    waiters: int = 0


class Connection:
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
        self.transport: Transport | None = None
        self.generation = 0
        self.closed = False
        self.reconnection_token = secrets.token_urlsafe(24) if self.reliable else None
        self.next_sequence_id = 0
        self.unacked: OrderedDict[int, str] = OrderedDict()
        self.unacked_bytes = 0
        self.ack_ids: OrderedDict[int, None] = OrderedDict()
        # ackIds of events whose upstream call is still running: a resend (after a recovery) waits
        # for that call's outcome instead of running the handler a second time.
        self.in_flight: dict[int, InFlight] = {}
        self.token_expires: float | None = None  # the access token's `exp`, re-checked on recovery
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
            subprotocol=self.subprotocol,
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
class Hub:
    connections: dict[str, Connection] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    user_groups: dict[str, set[str]] = field(default_factory=dict)



class ConnectionManager:
    """Connection bookkeeping and delivery; the Gateway's state and settings are declared here."""

    cs: ConnectionString
    sink: EventSink
    recovery_window: float
    upstream_timeout: float
    outbound_queue_limit: int
    reliable_buffer_messages: int
    reliable_buffer_bytes: int
    ack_delay: float
    _hubs: dict[str, Hub]
    _tasks: set[asyncio.Task[Any]]

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _hub(self, hub: str) -> Hub:
        return self._hubs.setdefault(hub.lower(), Hub())

    def _endpoints(self, request: web.Request) -> list[str]:
        return [self.cs.endpoint, f"{request.scheme}://{request.host}"]

    async def drop_socket(self, hub: str, connection_id: str, code: int = CLOSE_GOING_AWAY) -> bool:
        """Simulate a network drop: close the socket but keep a reliable connection recoverable."""
        h = self._hubs.get(hub.lower())
        conn = h.connections.get(connection_id) if h else None
        if conn is None or conn.transport is None:
            return False
        conn.transport.abort(code, "Simulated network drop.", recoverable=True)
        return True

    def _attach(self, conn: Connection, ws: web.WebSocketResponse, request: web.Request) -> Transport:
        previous = conn.transport
        conn.generation += 1
        transport = Transport(ws, request, self.outbound_queue_limit, conn.generation)
        conn.transport = transport
        if previous is not None:
            previous.abort(CLOSE_POLICY_VIOLATION, "Superseded by a recovered socket.", recoverable=True)
        return transport

    def _detach(self, conn: Connection, transport: Transport, reason: str | None) -> None:
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

    def _expire(self, conn: Connection, generation: int) -> None:
        if conn.closed or conn.transport is not None or conn.generation != generation:
            return
        self._remove(conn, "The connection was not recovered in time.")

    def _remove(self, conn: Connection, reason: str | None) -> None:
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

    def _close(self, conn: Connection, reason: str, *, code: int = CLOSE_NORMAL) -> None:
        """Server-side close: disconnected message, close frame, connection removed."""
        transport = conn.transport
        if transport is not None and not conn.raw:
            transport.enqueue(dumps({"type": "system", "event": "disconnected", "message": reason}), force=True)
        if transport is not None:
            transport.close_after_flush(code, reason, recoverable=False)
        self._remove(conn, reason)

    def _violation(self, conn: Connection, transport: Transport, code: int, reason: str) -> None:
        log.info("closing %s: %s", conn.connection_id, reason)
        if not conn.raw:
            transport.enqueue(dumps({"type": "system", "event": "disconnected", "message": reason}), force=True)
        transport.close_after_flush(code, reason, recoverable=False)
        self._remove(conn, reason)

    async def _notify_connected(self, conn: Connection) -> None:
        try:
            async with asyncio.timeout(self.upstream_timeout):
                await self.sink.connected(conn.hub, conn.context("system", "connected"))
        except Exception:
            log.exception("connected handler failed for %s", conn.connection_id)

    async def _notify_disconnected(self, conn: Connection, reason: str | None) -> None:
        if conn.connected_task is not None and not conn.connected_task.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(conn.connected_task)
        try:
            async with asyncio.timeout(self.upstream_timeout):
                await self.sink.disconnected(conn.hub, conn.context("system", "disconnected"), reason)
        except Exception:
            log.exception("disconnected handler failed for %s", conn.connection_id)

    # ------------------------------------------------------------------ delivery

    def _deliver(self, conn: Connection, out: Out) -> None:
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

    def _slow(self, conn: Connection, transport: Transport) -> None:
        reason = "The outbound message queue is full."
        log.warning("closing slow connection %s", conn.connection_id)
        transport.abort(CLOSE_POLICY_VIOLATION, reason, recoverable=False)
        self._remove(conn, reason)

    def _send_control(self, conn: Connection, transport: Transport, obj: dict[str, Any]) -> None:
        """Acks/pongs go to the connection's current socket (it may have been recovered meanwhile)."""
        current = conn.transport
        if current is not None and not conn.closed and not current.enqueue(dumps(obj), control=True):
            self._slow(conn, current)  # pinging or sending without ever reading

    def _ack(
        self,
        conn: Connection,
        transport: Transport,
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

    def _join(self, h: Hub, conn: Connection, group: str) -> None:
        conn.groups.add(group)
        h.groups.setdefault(group, set()).add(conn.connection_id)

    def _leave(self, h: Hub, conn: Connection, group: str) -> None:
        conn.groups.discard(group)
        members = h.groups.get(group)
        if members is not None:
            members.discard(conn.connection_id)
            if not members:
                del h.groups[group]

    def _send_group(
        self, hub: str, group: str, out: Out, excluded: Iterable[str] = (), sender: str | None = None
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
