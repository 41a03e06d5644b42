"""A minimal asyncio client for `json.reliable.webpubsub.azure.v1`, doing what web/js/wps.js does.

Why our own and not the SDK: the bench needs the arrival time and wire size of every frame, and it
must drive the protocol exactly as the browser does (ackId on every event, sequenceAck once a
second, dedupe by sequenceId). Recovery is left out on purpose: a dropped socket in a benchmark is a
failure to report, not to hide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

SUBPROTOCOL = "json.reliable.webpubsub.azure.v1"


@dataclass
class Traffic:
    """Frames and bytes on one socket, each way, as the service would see them."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    data_in: int = 0  # `message` frames (what the service bills as outbound messages)
    data_bytes_in: int = 0
    billed_units_in: int = 0  # ceil(bytes / 2 KB) per delivered data message
    events_out: int = 0  # `event` frames (each becomes one upstream webhook call in Azure)
    event_bytes_out: int = 0
    billed_units_upstream: int = 0  # ceil(data bytes / 2 KB) per event delivered upstream
    by_type: dict[str, list[int]] = field(default_factory=dict)  # data.type -> [messages, bytes, units]


def billed_units(nbytes: int) -> int:
    """Web PubSub counts outbound traffic in 2 KB increments (concept-billing-model)."""
    return max(1, -(-nbytes // 2048))


class Receiver:
    """What every bench client does with a received frame: count it as the service bills it,
    parse it, and hand each data message to `on_message(data, t_mono, nbytes)` once (by sequenceId)."""

    def __init__(self, on_message: Callable[[dict[str, Any], float, int], None] | None) -> None:
        self.on_message = on_message
        self.traffic = Traffic()
        self.duplicates = 0  # replayed messages dropped by sequenceId (the protocol's own dedupe)
        self._last_seq = 0

    def _receive(self, raw: str | bytes) -> tuple[dict[str, Any] | None, float, int]:
        """The frame's JSON (None when it is not JSON), arrival time and wire size."""
        now = time.monotonic()
        nbytes = len(raw) if isinstance(raw, bytes) else len(raw.encode())
        self.traffic.frames_in += 1
        self.traffic.bytes_in += nbytes
        try:
            m = json.loads(raw)
        except ValueError:
            return None, now, nbytes
        return (m if isinstance(m, dict) else None), now, nbytes

    def _deliver(self, m: dict[str, Any], now: float, nbytes: int) -> None:
        """A `message` frame: dropped when its sequenceId was seen, else counted and delivered."""
        seq = m.get("sequenceId")
        if isinstance(seq, int):
            if seq <= self._last_seq:
                self.duplicates += 1
                return
            self._last_seq = seq
        data = m.get("data")
        t = self.traffic
        t.data_in += 1
        t.data_bytes_in += nbytes
        units = billed_units(nbytes)
        t.billed_units_in += units
        dtype = data.get("type", "?") if isinstance(data, dict) else "?"
        row = t.by_type.setdefault(dtype, [0, 0, 0])
        row[0] += 1
        row[1] += nbytes
        row[2] += units
        if self.on_message is not None and isinstance(data, dict):
            self.on_message(data, now, nbytes)


class WpsClient(Receiver):
    """One reliable Web PubSub connection; `on_message(data, t_mono, nbytes)` sees every data message."""

    def __init__(self, url: str, on_message: Callable[[dict[str, Any], float, int], None] | None = None,
                 ack_timeout: float = 30.0, sequence_ack_every: float = 1.0) -> None:
        super().__init__(on_message)
        self.url = url
        self.ack_timeout = ack_timeout
        self.sequence_ack_every = sequence_ack_every
        self.connection_id: str | None = None
        self.user_id: str | None = None
        self.acks_failed: list[dict[str, Any]] = []
        self.acks_ok = 0
        self.closed_reason: str | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._next_ack = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._acked_seq = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._sent_at: dict[int, tuple[str, float]] = {}
        self.ack_latency: dict[str, list[float]] = {}  # event -> seconds from send to the service's ack

    async def open(self, wait_s: float = 30.0) -> WpsClient:
        self._ws = await connect(self.url, subprotocols=[SUBPROTOCOL], max_size=None, open_timeout=wait_s,
                                 ping_interval=20, ping_timeout=60)
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._seq_acks()),
                       asyncio.create_task(self._writer())]
        await asyncio.wait_for(self._connected.wait(), wait_s)
        return self

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()

    def send_event(self, event: str, data: dict[str, Any], ack: bool = True) -> asyncio.Future[dict[str, Any]] | None:
        """Send now (never awaits the network for long); with `ack` the future resolves on the service's ack."""
        frame: dict[str, Any] = {"type": "event", "event": event, "dataType": "json", "data": data}
        fut: asyncio.Future[dict[str, Any]] | None = None
        if ack:
            frame["ackId"] = self._next_ack
            fut = asyncio.get_running_loop().create_future()
            self._pending[self._next_ack] = fut
            self._sent_at[self._next_ack] = (event, time.monotonic())
            self._next_ack += 1
        text = json.dumps(frame, separators=(",", ":"))
        body = len(json.dumps(data, separators=(",", ":")).encode())
        t = self.traffic
        t.frames_out += 1
        t.bytes_out += len(text.encode())
        t.events_out += 1
        t.event_bytes_out += body
        t.billed_units_upstream += billed_units(body)
        self._outbox.put_nowait(text)
        return fut

    async def _writer(self) -> None:
        """One writer keeps frames in the order they were sent, as one browser socket does."""
        assert self._ws is not None
        while True:
            text = await self._outbox.get()
            try:
                await self._ws.send(text)
            except Exception as e:  # noqa: BLE001 - recorded, reported as a failed run
                self.closed_reason = self.closed_reason or f"send failed: {e!r}"
                return

    async def _seq_acks(self) -> None:
        while True:
            await asyncio.sleep(self.sequence_ack_every)
            if self._last_seq > self._acked_seq and self._ws is not None:
                self._acked_seq = self._last_seq
                self._outbox.put_nowait(json.dumps({"type": "sequenceAck", "sequenceId": self._last_seq}))

    async def _reader(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                m, now, nbytes = self._receive(raw)
                if m is None:
                    continue
                kind = m.get("type")
                if kind == "system":
                    if m.get("event") == "connected":
                        self.connection_id = m.get("connectionId")
                        self.user_id = m.get("userId")
                        self._connected.set()
                    elif m.get("event") == "disconnected":
                        self.closed_reason = m.get("message") or "disconnected"
                elif kind == "ack":
                    sent = self._sent_at.pop(m.get("ackId"), None)
                    if sent is not None:
                        self.ack_latency.setdefault(sent[0], []).append(now - sent[1])
                    fut = self._pending.pop(m.get("ackId"), None)
                    ok = m.get("success") or (m.get("error") or {}).get("name") == "Duplicate"
                    if ok:
                        self.acks_ok += 1
                    else:
                        self.acks_failed.append(m)
                    if fut is not None and not fut.done():
                        fut.set_result(m)
                elif kind == "message":
                    self._deliver(m, now, nbytes)
        except Exception as e:  # noqa: BLE001
            self.closed_reason = self.closed_reason or f"socket closed: {e!r}"
        finally:
            if self.closed_reason is None and self._ws is not None and self._ws.close_code not in (None, 1000):
                self.closed_reason = f"closed {self._ws.close_code} {self._ws.close_reason}"
