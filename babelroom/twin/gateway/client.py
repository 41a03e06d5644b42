"""The client WebSocket endpoint ``/client/hubs/{hub}``: handshake, recovery, frame dispatch.

Invalid frames without an ``ackId`` close the socket with 1007, with one they get a failed ack;
oversize frames close with 1009; simple (no subprotocol) clients send every frame as the user
event ``message``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from babelroom.twin.wpsauth import LEEWAY_SECONDS, TokenError, claim_list, connection_signature, verify_client_token

from .connection import Connection, ConnectionManager, InFlight, Transport
from .upstream import ConnectRequest, ConnectResult, UserEventResult
from .wire import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    EVENT_NAME_RE,
    HUB_NAME_RE,
    SUPPORTED_SUBPROTOCOLS,
    BadFrame,
    Data,
    Out,
    dumps,
    loads,
    optional_uint,
    parse_client_data,
    result_data,
    valid_group,
)

log = logging.getLogger("babelroom.twin.gateway")


class ClientEndpoint(ConnectionManager):
    """WebSocket side of the gateway (mixed into :class:`Gateway`)."""

    max_message_bytes: int
    handshake_delay: float

    async def _client_endpoint(self, request: web.Request) -> web.StreamResponse:
        if not web.WebSocketResponse(protocols=SUPPORTED_SUBPROTOCOLS).can_prepare(request).ok:
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
        if any(not valid_group(g) for g in token_groups):
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
        conn = Connection(
            hub,
            connection_id,
            user_id,
            selected_canon,
            roles,
            claims,
            headers,
            connection_signature(self.cs.key_bytes, connection_id),
        )
        exp = claims_raw.get("exp")
        conn.token_expires = float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
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
        extra_groups = [g for g in (result.groups or ()) if valid_group(g)]
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
            transport.enqueue(dumps(hello), control=True)
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
        if conn.token_expires is not None and time.time() > conn.token_expires + LEEWAY_SECONDS:
            # The access token ran out while the socket was away: the session ends here, and the
            # client has to fetch a new URL (new token) as on a first connect.
            self._remove(conn, "The access token expired before the connection was recovered.")
            await ws.close(code=CLOSE_POLICY_VIOLATION, message=b"The access token has expired.")
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

    async def _run(self, conn: Connection, transport: Transport) -> None:
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
                        await self._raw_event(conn, transport, Data("text", msg.data))
                    else:
                        await self._on_frame(conn, transport, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    if conn.raw:
                        await self._raw_event(conn, transport, Data("binary", bytes(msg.data)))
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

    async def _drain_writer(self, transport: Transport) -> None:
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

    async def _on_frame(self, conn: Connection, transport: Transport, text: str) -> None:
        try:
            msg = loads(text)
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
            ack_id = optional_uint(msg, "ackId")
        except BadFrame as exc:
            self._violation(conn, transport, CLOSE_INVALID_PAYLOAD, str(exc))
            return
        try:
            await self._dispatch(conn, transport, msg, ack_id)
        except BadFrame as exc:
            if ack_id is not None:
                # With an ackId the client can be told what was wrong and keep its connection.
                self._ack(conn, transport, ack_id, ("BadRequest", str(exc)))
            else:
                self._violation(conn, transport, CLOSE_INVALID_PAYLOAD, f"Invalid message: {exc}")

    async def _dispatch(
        self, conn: Connection, transport: Transport, msg: dict[str, Any], ack_id: int | None
    ) -> None:
        kind = msg.get("type")
        if not isinstance(kind, str):
            raise BadFrame("Missing required property 'type'.")
        kind = kind.lower()
        if kind == "ping":
            self._send_control(conn, transport, {"type": "pong"})
            return
        if kind == "sequenceack":
            seq = optional_uint(msg, "sequenceId")
            if seq is None:
                raise BadFrame("Missing required property 'sequenceId'.")
            conn.acknowledge(seq)
            return
        if kind not in ("joingroup", "leavegroup", "sendtogroup", "event"):
            raise BadFrame(f"Unknown 'type': {msg.get('type')}.")

        if kind == "event":
            event = msg.get("event")
            if not isinstance(event, str) or not EVENT_NAME_RE.match(event):
                raise BadFrame("The event name is invalid.")
            data = parse_client_data(msg)
            if ack_id is not None and (running := conn.in_flight.get(ack_id)) is not None:
                # A resend (typically after a recovery) while the first call runs: wait for it, then
                # answer as the service answers a processed duplicate, or with the first call's error.
                running.waiters += 1
                try:
                    error = await asyncio.shield(running.outcome)
                finally:
                    running.waiters -= 1
                self._ack(conn, transport, ack_id, error or _duplicate(ack_id))
                return
            if ack_id is not None and ack_id in conn.ack_ids:
                self._ack(conn, transport, ack_id, _duplicate(ack_id))
                return
            await self._user_event(conn, transport, event, data, ack_id)
            return

        group = msg.get("group")
        if not valid_group(group):
            raise BadFrame("The group name is invalid.")
        assert isinstance(group, str)
        data = parse_client_data(msg) if kind == "sendtogroup" else None
        no_echo = msg.get("noEcho", False)
        if not isinstance(no_echo, bool):
            raise BadFrame("Expected 'noEcho' to be a boolean.")
        # No await from here to remember_ack: a joinGroup/leaveGroup/sendToGroup is never in flight,
        # so the processed-ackId check alone keeps a resend from running twice.
        if ack_id is not None and ack_id in conn.ack_ids:
            self._ack(conn, transport, ack_id, _duplicate(ack_id))
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
            out = Out(data, group=group, from_user_id=conn.user_id)
            self._send_group(conn.hub, group, out, sender=conn.connection_id if no_echo else None)
        if ack_id is not None:
            conn.remember_ack(ack_id)
        self._ack(conn, transport, ack_id)

    async def _call_user_event(
        self, conn: Connection, event: str, data: Data
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
        self, conn: Connection, transport: Transport, event: str, data: Data, ack_id: int | None
    ) -> None:
        running: InFlight | None = None
        if ack_id is not None:
            running = InFlight(asyncio.get_running_loop().create_future())
            conn.in_flight[ack_id] = running
        error: tuple[str, str] | None = ("InternalServerError", "The event was not processed.")
        try:
            result, error = await self._call_user_event(conn, event, data)
            if conn.closed:
                return
            error = self._reply(conn, result, error, raw=False)
            if error is None and ack_id is not None:
                conn.remember_ack(ack_id)
            self._ack(conn, transport, ack_id, error)
        finally:
            if running is not None and ack_id is not None:
                conn.in_flight.pop(ack_id, None)
                if not running.outcome.done():
                    running.outcome.set_result(error)

    def _reply(self, conn: Connection, result: UserEventResult | None, error: tuple[str, str] | None,
               raw: bool) -> tuple[str, str] | None:
        """Applies a handler's states and sends its reply data; a reply that cannot be serialised
        becomes the event's error (serialised before sending, so only this event fails)."""
        if result is not None and result.states is not None:
            conn.states = dict(result.states)  # like ce-connectionState: the new value, not a merge
        if error is None and result is not None and result.data is not None:
            try:
                reply = Out(result_data(result.data, result.data_type))
                reply.raw() if raw else reply.frame(None)
            except (ValueError, TypeError) as exc:
                return ("InternalServerError", f"The event handler returned invalid data: {exc}")
            self._deliver(conn, reply)
        return error

    async def _raw_event(self, conn: Connection, transport: Transport, data: Data) -> None:
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


def _duplicate(ack_id: int) -> tuple[str, str]:
    """The ack error the service sends for an already processed ackId (the SDKs count it as success)."""
    return ("Duplicate", f"Message with ack-id: {ack_id} has been processed")
