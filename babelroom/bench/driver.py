"""Participants that behave like the web client: speakers hold the key, listeners timestamp everything.

A speaker's turn is exactly web/js/talk.js: `turn.start {turn}` (plus `whole: true` for the
baseline strategy), then `audio {turn, seq, rate, pcm}` 200 ms frames, each sent when its 200 ms
of speech has been "captured" (real-time pace), then `turn.end {turn, frames}` right after the last
frame, which is the moment of key release. Every event carries an ackId, as the browser's does.
Like the web client it sends no `silence` hints: the segmenter finds pauses itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from babelroom.segmenter import ClosedSegment, Outcome, Segmenter, new_state

from .client import WpsClient
from .clips import BYTES_PER_SECOND, Clip, frames, new_take


@dataclass
class Caption:
    t: float
    id: str
    user: str
    turn: str
    segment: int
    final: bool
    original: str
    text: str
    language: str
    translated: bool
    note: str | None


@dataclass
class Audio:
    t: float
    id: str
    user: str
    turn: str
    segment: int
    seq: int
    last: bool
    seconds: float  # of speech carried (PCM16 bytes / 48 000, or Opus packets × frameMs)
    codec: str


@dataclass
class Turn:
    """One held key: what was sent and when (monotonic seconds; `wall_release` is time.time())."""

    room: str
    user: str
    language: str
    turn: str
    clip: str
    voice: str
    whole: bool
    seconds: float
    t_start: float = 0.0
    frame_times: list[float] = field(default_factory=list)
    t_release: float = 0.0
    wall_release: float = 0.0
    level: int = 0
    silences: list[tuple[int, int]] = field(default_factory=list)  # (sent after frame seq, cut seq)
    pcm: bytes = field(default=b"", repr=False)  # the clip's audio (shared, not copied)
    _segments: list[ClosedSegment] | None = field(default=None, repr=False)

    @property
    def segments(self) -> list[ClosedSegment]:
        """The segments the speaker entity cuts this turn into: the server's own segmenter, replayed on
        exactly the frames and silence flags this turn sent, in the order they were sent."""
        if self._segments is None:
            seg, state = Segmenter(), new_state()
            cuts = dict(self.silences)
            closed: list[ClosedSegment] = []

            def take(out: Outcome) -> None:
                closed.extend(a for a in out.actions if isinstance(a, ClosedSegment) and a.nbytes)

            take(seg.start(state, self.turn, self.whole))
            fs = frames(self.pcm)
            for i, f in enumerate(fs):
                take(seg.frame(state, self.turn, i, f))
                if i in cuts:
                    take(seg.silence(state, self.turn, cuts[i]))
            take(seg.end(state, self.turn, len(fs)))
            self._segments = closed
        return self._segments


def frame_rms(pcm: bytes) -> float:
    """RMS of a frame in [-1, 1], as the capture worklet reports it."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


class Participant:
    """One joined member with its socket; records captions and audio it receives."""

    def __init__(self, room: str, name: str, language: str, role: str, ticket: dict[str, Any]) -> None:
        self.room = room
        self.name = name
        self.language = language
        self.role = role
        self.ticket = ticket
        self.user_id: str = ticket["userId"]
        self.captions: list[Caption] = []
        self.audio: list[Audio] = []
        self.speaking: list[tuple[float, str, str, bool]] = []  # (t, userId, turn, active)
        self.participants = 0
        self.present: set[Any] = set()
        self.errors: list[dict[str, Any]] = []
        # (t, userId, turn, segment, code) of each `notice`: a segment that failed reaches
        # listeners as a notice, not as a caption, and counts as answered (never silence)
        self.notices: list[tuple[float, str, str, int, str]] = []
        self.last_message_at = time.monotonic()
        self.client = WpsClient(ticket["url"], self._on_message)

    def _on_message(self, d: dict[str, Any], t: float, nbytes: int) -> None:
        self.last_message_at = t
        kind = d.get("type")
        if kind == "caption":
            self.captions.append(Caption(t, d.get("id", ""), d.get("userId", ""), str(d.get("turn")),
                                         int(d.get("segment", -1)), bool(d.get("final")), d.get("original") or "",
                                         d.get("text") or "", d.get("language", ""), bool(d.get("translated")),
                                         d.get("note")))
        elif kind == "audio":
            codec = str(d.get("codec") or "pcm16")
            if codec == "opus":
                seconds = len(d.get("packets") or []) * float(d.get("frameMs") or 20) / 1000
            else:
                pcm = d.get("pcm") or ""
                seconds = (len(pcm) * 3 // 4 - pcm.count("=")) / (2 * int(d.get("rate") or 24_000))
            self.audio.append(Audio(t, d.get("id", ""), d.get("userId", ""), str(d.get("turn")),
                                    int(d.get("segment", -1)), int(d.get("seq", -1)), bool(d.get("last")),
                                    seconds, codec))
        elif kind == "speaking":
            self.speaking.append((t, d.get("userId", ""), str(d.get("turn")), bool(d.get("active"))))
        elif kind == "welcome":  # the full list once, then presence deltas
            self.present = {p.get("userId") for p in d.get("participants") or []}
            self.participants = len(self.present)
        elif kind in ("presence.joined", "presence.left"):
            who = (d.get("participant") or {}).get("userId") if kind == "presence.joined" else d.get("userId")
            (self.present.add if kind == "presence.joined" else self.present.discard)(who)
            self.participants = len(self.present)
        elif kind == "notice":
            self.notices.append((t, d.get("userId", ""), str(d.get("turn")), int(d.get("segment", -1)),
                                 str(d.get("code"))))
        elif kind == "error":
            self.errors.append(d)

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()


class Speaker(Participant):
    async def speak(self, clip: Clip, whole: bool, level: int,
                    after_frame: Callable[[int], Awaitable[None]] | None = None) -> Turn:
        """Hold the key for the whole clip at real-time pace, then release; `after_frame(seq)` runs
        right after each frame is queued (the soak drops the socket there, with frames in flight)."""
        tid = f"t{uuid.uuid4().hex[:12]}"
        pcm = new_take(clip.pcm)
        rec = Turn(self.room, self.user_id, self.language, tid, clip.name, clip.voice, whole, clip.seconds,
                   level=level, pcm=pcm)
        start: dict[str, Any] = {"turn": tid, "whole": True} if whole else {"turn": tid}
        self.client.send_event("turn.start", start)
        rec.t_start = t0 = time.monotonic()
        captured = 0
        fs = frames(pcm)
        for seq, f in enumerate(fs):
            captured += len(f)
            delay = t0 + captured / BYTES_PER_SECOND - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.client.send_event("audio", {"turn": tid, "seq": seq, "rate": 16000,
                                             "pcm": base64.b64encode(f).decode("ascii")})
            rec.frame_times.append(time.monotonic())
            if after_frame is not None:
                await after_frame(seq)
        rec.t_release = rec.frame_times[-1]
        rec.wall_release = time.time() - (time.monotonic() - rec.t_release)
        self.client.send_event("turn.end", {"turn": tid, "frames": len(fs)})
        return rec


class Api:
    """The HTTP API (docs/protocol.md §1) over one aiohttp session.

    Each call comes from its own address in the benchmarking range (RFC 2544, X-Forwarded-For),
    as the bench's people would be separate clients; the API's per-address limits then apply
    per person, not to the whole bench.
    """

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/")
        self.session = session
        self.invites: dict[str, dict[str, str]] = {}
        self._calls = 0

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._calls += 1
        address = f"198.18.{self._calls // 250 % 250}.{self._calls % 250 + 1}"
        async with self.session.post(self.base + path, json=body, headers={"X-Forwarded-For": address}) as r:
            out = await r.json(content_type=None)
            if r.status >= 300:
                raise RuntimeError(f"POST {path} → {r.status}: {json.dumps(out)[:300]}")
            return out

    async def room(self, name: str) -> str:
        out = await self._post("/api/rooms", {"name": name, "validForMinutes": 240})
        self.invites[out["roomId"]] = out["invites"]
        return out["roomId"]

    async def join(self, room: str, name: str, language: str, role: str) -> dict[str, Any]:
        """Joins with the room's invite for `role` (the role comes from the invite)."""
        return await self._post(f"/api/rooms/{room}/join",
                                {"displayName": name, "language": language, "invite": self.invites[room][role]})


LANGUAGES = ("es", "en", "pt")


@dataclass
class RoomParty:
    room: str
    speaker: Speaker
    listeners: list[Participant]

    @property
    def everyone(self) -> list[Participant]:
        return [self.speaker, *self.listeners]


async def make_room(api: Api, index: int, language: str, listener_languages: list[str]) -> RoomParty:
    """One room: a speaker in `language`, one listener per other language; returns once all are present."""
    room = await api.room(f"bench-{index}-{language}")
    sp = Speaker(room, f"Speaker{index}", language, "speaker", await api.join(room, f"Speaker{index}", language,
                                                                              "speaker"))
    ls = [Participant(room, f"L{index}{lang}", lang, "listener", await api.join(room, f"L{index}{lang}", lang,
                                                                                 "listener"))
          for lang in listener_languages]
    party = RoomParty(room, sp, ls)
    for p in party.everyone:
        await p.open()
    deadline = time.monotonic() + 30
    n = len(party.everyone)
    while time.monotonic() < deadline and any(p.participants < n for p in party.everyone):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return party


def voiced(turn: Turn, seg: ClosedSegment, level: float = 0.02, frames_needed: int = 3) -> bool:
    """Whether a segment carries speech worth a caption (a silent tail gets none, by design)."""
    fs = frames(turn.pcm)[seg.first_seq: seg.last_seq + 1]
    return sum(frame_rms(f) > level for f in fs) >= frames_needed


def turn_done(turn: Turn, listener: Participant) -> bool:
    """Every voiced segment has its final caption and, when translated, its last audio chunk."""
    finals = {c.segment: c for c in listener.captions
              if c.turn == turn.turn and c.final and c.language == listener.language}
    lasts = {a.segment for a in listener.audio if a.turn == turn.turn and a.last}
    noticed = {seg for _, _, tid, seg, _ in listener.notices if tid == turn.turn}
    return all(g.index in noticed or (g.index in finals and (g.index in lasts or not finals[g.index].translated))
               for g in turn.segments if voiced(turn, g))


async def wait_done(parties: list[RoomParty], turns: list[list[Turn]], quiet: float = 6.0,
                    limit: float = 180.0) -> float:
    """After the last release: wait until every listener has every segment of every turn, or until
    nothing has arrived for `quiet` seconds (a silent segment yields no message at all)."""
    start = time.monotonic()
    pending = [(t, x) for party, ts in zip(parties, turns, strict=True) for t in ts for x in party.listeners]
    while time.monotonic() - start < limit:
        pending = [(t, x) for t, x in pending if not turn_done(t, x)]
        if not pending:
            break
        last = max(p.last_message_at for party in parties for p in party.everyone)
        if time.monotonic() - max(last, start) >= quiet:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - start
