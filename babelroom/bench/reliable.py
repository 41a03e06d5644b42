"""A Web PubSub client that recovers like the web client (web/js/wps.js), and soak rooms built from it.

Recovery resends unacked events and drops replayed messages; a refused recovery rejoins. Used by
`babelroom.bench.soak` and tests/reliability/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from .client import SUBPROTOCOL, Receiver
from .driver import Caption, Participant, Speaker

# ------------------------------------------------------------------------------------ rooms
# Room creation and join live here and nowhere else, so the invite-based join is one edit away.

async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], tries: int = 20) -> dict[str, Any]:
    """POST JSON; a 429 is waited out (Retry-After), as a polite client would."""
    for _ in range(tries):
        async with http.post(url, json=body) as r:
            out = await r.json(content_type=None)
            if r.status == 429:
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            if r.status >= 300:
                raise RuntimeError(f"POST {url} → {r.status}: {json.dumps(out)[:300]}")
            return out
    raise RuntimeError(f"POST {url}: still rate limited after {tries} tries")


async def create_room(http: aiohttp.ClientSession, base: str, name: str) -> dict[str, Any]:
    """POST /api/rooms; the whole answer (roomId, and invites/hostKey where the API gives them)."""
    return await _post(http, f"{base}/api/rooms", {"name": name, "validForMinutes": 240})


async def join_room(http: aiohttp.ClientSession, base: str, room: dict[str, Any], name: str, language: str,
                    role: str) -> dict[str, Any]:
    """POST /api/rooms/{id}/join: with the room's invite for `role` when it has invites, else by role."""
    body: dict[str, Any] = {"displayName": name, "language": language}
    invites = room.get("invites") or {}
    if invites:
        body["invite"] = invites[role]
    else:
        body["role"] = role
    return await _post(http, f"{base}/api/rooms/{room['roomId']}/join", body)


# ------------------------------------------------------------------------------- the client

@dataclass
class _Pending:
    event: str
    text: str
    future: asyncio.Future[dict[str, Any]]
    sent_at: float
    seq: Any = None  # an audio frame's seq, for the ack log


class ReliableClient(Receiver):
    """`json.reliable.webpubsub.azure.v1` with recovery, doing what web/js/wps.js does.

    Every event carries an ackId and stays pending until acked; a lost socket is recovered with
    `awps_connection_id` + `awps_reconnection_token` and the pending frames are resent in ackId
    order (the service answers `Duplicate` for those it had); messages are deduplicated by
    sequenceId. When recovery is refused (1008) or its window is over, a fresh connection is made
    from `rejoin()` (a new join on the HTTP API) and only frames `resend_on_fresh` accepts are
    resent, as the page does. Drop-in for bench.client.WpsClient in a Participant.
    """

    def __init__(self, url: str, on_message: Callable[[dict[str, Any], float, int], None] | None = None, *,
                 rejoin: Callable[[], Awaitable[str]] | None = None,
                 resend_on_fresh: Callable[[str], bool] = lambda event: event == "chat",
                 recovery_window: float = 30.0, sequence_ack_every: float = 1.0) -> None:
        super().__init__(on_message)
        self.url = url
        self.rejoin = rejoin
        self.resend_on_fresh = resend_on_fresh
        self.recovery_window = recovery_window
        self.sequence_ack_every = sequence_ack_every
        self.connection_id: str | None = None
        self.reconnection_token: str | None = None
        self.user_id: str | None = None
        self.acks_ok = 0
        self.acks_failed: list[dict[str, Any]] = []
        self.closed_reason: str | None = None
        self.ack_latency: dict[str, list[float]] = {}
        self.ack_log: list[tuple[str, Any, float]] = []  # (event, seq, when) of every successful ack
        self.kills = 0
        self.recoveries = 0
        self.fresh_connections = 0
        self.dropped_on_fresh = 0  # pending frames failed because the connection was replaced
        self.resent = 0
        self.timeline: list[tuple[float, str]] = []  # (monotonic, what happened to the connection)
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._next_ack = 1
        self._pending: dict[int, _Pending] = {}
        self._outbox: asyncio.Queue[int] = asyncio.Queue()
        self._acked_seq = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def open(self, wait_s: float = 30.0) -> ReliableClient:
        self._ws = await self._dial(self.url)
        self._task = asyncio.create_task(self._supervise())
        await asyncio.wait_for(self.connected.wait(), wait_s)
        return self

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for p in self._pending.values():
            if not p.future.done():
                p.future.cancel()

    def kill(self) -> int:
        """Cut the TCP connection as a network failure would (no close frame); returns the number of
        events in flight (sent or queued, not acked) at that moment."""
        in_flight = len(self._pending)
        if self._ws is not None and self._ws.transport is not None:
            self.kills += 1
            self._ws.transport.abort()
        return in_flight

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send_event(self, event: str, data: dict[str, Any], ack: bool = True) -> asyncio.Future[dict[str, Any]]:
        """Queue an event with an ackId; the future resolves on the ack, across recoveries."""
        ack_id = self._next_ack
        self._next_ack += 1
        frame = {"type": "event", "event": event, "dataType": "json", "data": data, "ackId": ack_id}
        text = json.dumps(frame, separators=(",", ":"))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ack_id] = _Pending(event, text, fut, time.monotonic(), data.get("seq"))
        self.traffic.events_out += 1
        self._outbox.put_nowait(ack_id)
        return fut

    # -- internals ---------------------------------------------------------------------------

    async def _dial(self, url: str) -> ClientConnection:
        return await connect(url, subprotocols=[SUBPROTOCOL], max_size=None, open_timeout=15,
                             ping_interval=20, ping_timeout=60, close_timeout=2)

    async def _supervise(self) -> None:
        """One socket at a time: read and write until it ends, then recover or reconnect."""
        ws = self._ws
        while ws is not None and not self._closing:
            self._ws = ws
            writer = asyncio.create_task(self._write(ws))
            try:
                await self._read(ws)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            if self._closing:
                return
            self.timeline.append((time.monotonic(), f"lost {ws.close_code} {self.closed_reason}"))
            ws = await self._reconnect(ws.close_code)

    async def _reconnect(self, code: int | None) -> ClientConnection | None:
        started = time.monotonic()
        delay = 0.05
        refused = code == 1008
        while not self._closing:
            await asyncio.sleep(delay)
            delay = 1.0
            recover = (not refused and self.connection_id is not None and self.reconnection_token is not None
                       and time.monotonic() - started < self.recovery_window)
            try:
                if recover:
                    sep = "&" if "?" in self.url else "?"
                    ws = await self._dial(f"{self.url}{sep}awps_connection_id={self.connection_id}"
                                          f"&awps_reconnection_token={self.reconnection_token}")
                    self.recoveries += 1
                    self.resent += len(self._pending)
                    self.timeline.append((time.monotonic(), f"recovering, resending {len(self._pending)}"))
                    return ws
                if self.rejoin is not None:
                    self.url = await self.rejoin()
                ws = await self._dial(self.url)
            except Exception:  # noqa: BLE001 - host down or refusing: try again, as the SDKs do
                continue
            self.connection_id = self.reconnection_token = None
            self.connected.clear()
            self._last_seq = self._acked_seq = 0
            for ack_id, p in list(self._pending.items()):
                if not self.resend_on_fresh(p.event):
                    del self._pending[ack_id]
                    self.dropped_on_fresh += 1
                    if not p.future.done():  # what the page's SendError says, as an ack
                        p.future.set_result({"type": "ack", "ackId": ack_id, "success": False,
                                             "error": {"name": "ConnectionLost", "message": "connection replaced"}})
            self.fresh_connections += 1
            self.resent += len(self._pending)
            self.timeline.append((time.monotonic(), f"fresh, resending {len(self._pending)}"))
            return ws
        return None

    async def _write(self, ws: ClientConnection) -> None:
        """Pending frames first (ackId order), then new ones as they come; sequenceAck once a second."""
        sent: set[int] = set()
        for ack_id in sorted(self._pending):
            p = self._pending.get(ack_id)
            if p is not None:
                await ws.send(p.text)
                sent.add(ack_id)
        next_seq_ack = time.monotonic() + self.sequence_ack_every
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_seq_ack - time.monotonic())):
                    ack_id = await self._outbox.get()
            except TimeoutError:
                next_seq_ack = time.monotonic() + self.sequence_ack_every
                if self._last_seq > self._acked_seq:
                    seq = self._last_seq
                    await ws.send(json.dumps({"type": "sequenceAck", "sequenceId": seq}))
                    self._acked_seq = seq
                continue
            p = self._pending.get(ack_id)
            if p is None or ack_id in sent:
                continue
            await ws.send(p.text)
            sent.add(ack_id)
            self.traffic.frames_out += 1

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._on_frame(raw)
        except Exception as e:  # noqa: BLE001 - a dropped socket is what this client is for
            self.closed_reason = f"socket lost: {type(e).__name__}"

    def _on_frame(self, raw: str | bytes) -> None:
        m, now, nbytes = self._receive(raw)
        if m is None:
            return
        kind = m.get("type")
        if kind == "system":
            if m.get("event") == "connected":
                if m.get("connectionId") != self.connection_id:
                    self._last_seq = self._acked_seq = 0
                self.connection_id = m.get("connectionId")
                self.reconnection_token = m.get("reconnectionToken") or self.reconnection_token
                self.user_id = m.get("userId")
                self.connected.set()
        elif kind == "ack":
            p = self._pending.pop(m.get("ackId"), None)
            if p is None:
                return
            self.ack_latency.setdefault(p.event, []).append(now - p.sent_at)
            ok = m.get("success") or (m.get("error") or {}).get("name") == "Duplicate"
            if ok:
                self.acks_ok += 1
                self.ack_log.append((p.event, p.seq, now))
            else:
                self.acks_failed.append(m | {"event": p.event})
            if not p.future.done():
                p.future.set_result(m)
        elif kind == "message":
            self._deliver(m, now, nbytes)


class Member(Participant):
    """A participant on a ReliableClient that rejoins on the HTTP API when its session is gone."""

    chats: list[dict[str, Any]]

    def __init__(self, http: aiohttp.ClientSession, base: str, room: dict[str, Any], name: str, language: str,
                 role: str, ticket: dict[str, Any]) -> None:
        super().__init__(room["roomId"], name, language, role, ticket)
        self.chats = []
        self.rejoins = 0

        async def rejoin() -> str:
            self.ticket = await join_room(http, base, room, name, language, role)
            self.user_id = self.ticket["userId"]
            self.participants = 0  # a new member: presence starts over
            self.present = set()
            self.rejoins += 1
            return str(self.ticket["url"])

        self.client = ReliableClient(ticket["url"], self._on_message, rejoin=rejoin)  # type: ignore[assignment]

    def _on_message(self, d: dict[str, Any], t: float, nbytes: int) -> None:
        if d.get("type") == "chat":
            self.last_message_at = t
            self.chats.append(d | {"t": t})
            return
        if d.get("type") == "notice" and "segment" in d:  # a segment that failed: kept as a final line
            self.last_message_at = t
            self.captions.append(Caption(t, d.get("id", ""), d.get("userId", ""), str(d.get("turn")),
                                         int(d.get("segment", -1)), True, d.get("original") or "", "",
                                         d.get("language", ""), False, f"notice: {d.get('code')}"))
            return
        super()._on_message(d, t, nbytes)

    @property
    def rc(self) -> ReliableClient:
        assert isinstance(self.client, ReliableClient)
        return self.client


class Talker(Member, Speaker):
    """A speaker on a ReliableClient."""


async def member(http: aiohttp.ClientSession, base: str, room: dict[str, Any], name: str, language: str,
                 role: str = "listener") -> Member:
    ticket = await join_room(http, base, room, name, language, role)
    cls = Talker if role == "speaker" else Member
    return cls(http, base, room, name, language, role, ticket)


@dataclass
class Party:
    room: dict[str, Any]
    speaker: Talker
    listeners: list[Member]

    @property
    def everyone(self) -> list[Member]:
        return [self.speaker, *self.listeners]


async def party(http: aiohttp.ClientSession, base: str, index: int, language: str,
                listen: list[str]) -> Party:
    """A room with a speaker in `language` and one listener per `listen` language, all connected and
    present (someone was told the whole room is there: with presence deltas the last one's welcome)."""
    room = await create_room(http, base, f"soak-{index}-{language}")
    sp = await member(http, base, room, f"S{index}", language, "speaker")
    ls = [await member(http, base, room, f"L{index}{i}{lang}", lang) for i, lang in enumerate(listen)]
    p = Party(room, sp, ls)  # type: ignore[arg-type]
    for x in p.everyone:
        await x.open()
    await until(lambda: max(x.participants for x in p.everyone) >= len(p.everyone), 30)
    return p


async def until(check: Callable[[], bool], limit: float, step: float = 0.1) -> bool:
    """Poll `check` until true or `limit` seconds passed (a bound on waiting, never an assertion)."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


async def close_all(parties: list[Party]) -> None:
    for p in parties:
        for x in p.everyone:
            await x.close()
