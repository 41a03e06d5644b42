"""The speaker segmenter: the flush policy of the speaker entity, as a pure state machine.

Frames arrive as client events, possibly late, out of order or twice. The segmenter puts them in
`seq` order (a missing frame holds the turn back by at most 1 s of audio), drops duplicates, and
closes a segment at ~3 s of audio, ~1 MB, the end of the turn or a silence flag, whichever comes
first, so long turns are translated while the person still speaks. Past 1 s it closes early at the
first quiet frame, so cuts fall between words rather than inside them (a word cut in two is
misheard on both sides). A turn takes at most MAX_TURN_SECONDS of audio. Its state is plain JSON
so a Durable Entity can hold it; audio beyond STATE_LIMIT is handed out as a `Spill` for Blob
storage, so entity state stays small.
"""

from __future__ import annotations

import base64
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

BYTES_PER_SECOND = 16_000 * 2
MAX_SEGMENT_SECONDS = 3.0
MAX_SEGMENT_BYTES = 1 << 20
STATE_LIMIT = 48 * 1024  # PCM kept inline in entity state before it spills to Blob
MAX_GAP_SECONDS = 1.0  # audio held behind a missing frame before the gap is given up
MAX_TURN_SECONDS = 300.0  # audio per turn (100 segments of 3 s): beyond it frames are refused
KEEP_DONE_TURNS = 8
MIN_PAUSE_CUT_SECONDS = 1.0
QUIET_RMS = 300.0  # absolute floor (PCM16) under which a 100 ms frame counts as a pause
QUIET_RATIO = 0.2  # ... or below this share of the segment's mean frame RMS
MIN_SPEECH_SECONDS = 0.15


def rms(pcm: bytes) -> float:
    samples = array("h", pcm[: len(pcm) // 2 * 2])
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def quietest(pcm: bytes, window: int = 3_200) -> float:
    """RMS of the quietest 100 ms inside a frame: a short pause counts whatever the frame size."""
    return min((rms(pcm[i:i + window]) for i in range(0, len(pcm), window)), default=0.0)


@dataclass(frozen=True)
class Spill:
    """Audio of the open segment to stage in Blob as block `block_id` of segment `index`."""

    turn: str
    index: int
    block_id: str
    pcm: bytes


@dataclass(frozen=True)
class ClosedSegment:
    turn: str
    index: int
    reason: str  # "duration" | "pause" | "size" | "end" | "silence" | "switch"
    blocks: list[str]  # spilled blocks, in order, that precede `tail`
    tail: bytes
    nbytes: int
    first_seq: int
    last_seq: int
    level: float = 0.0  # mean RMS of its 100 ms frames

    @property
    def seconds(self) -> float:
        return self.nbytes / BYTES_PER_SECOND

    @property
    def worth_translating(self) -> bool:
        """Too short for a word, or quiet throughout: no model time, no empty caption."""
        return self.seconds >= MIN_SPEECH_SECONDS and self.level >= QUIET_RMS


Action = Spill | ClosedSegment


@dataclass
class Limits:
    seconds: float = MAX_SEGMENT_SECONDS
    max_bytes: int = MAX_SEGMENT_BYTES
    state_limit: int = STATE_LIMIT
    pause_after: float = MIN_PAUSE_CUT_SECONDS  # 0 disables cutting at pauses

    @property
    def duration_bytes(self) -> int:
        return int(self.seconds * BYTES_PER_SECOND)


@dataclass
class Outcome:
    actions: list[Action] = field(default_factory=list)
    duplicate: bool = False
    late: bool = False
    too_long: bool = False  # the turn already holds MAX_TURN_SECONDS of audio: frame dropped


def new_state() -> dict[str, Any]:
    return {
        "turn": None,
        "next": 0,
        "pending": {},
        "chunks": [],
        "inline": 0,
        "bytes": 0,
        "blocks": [],
        "segment": 0,
        "first": None,
        "energy": 0.0,
        "frames": 0,
        "silence_at": None,
        "turn_bytes": 0,
        "done": [],
    }


class Segmenter:
    """Applies one client event to the state and returns what to store or translate."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def start(self, state: dict[str, Any], turn: str, whole: bool = False) -> Outcome:
        """`whole`: one segment per turn, closed at release (the seed's strategy, kept as the
        benchmark baseline)."""
        out = Outcome()
        if turn in state["done"] or state["turn"] == turn:
            out.late = turn in state["done"]
            return out
        self._switch(state, turn, out)
        state["whole"] = whole
        return out

    def frame(self, state: dict[str, Any], turn: str, seq: int, pcm: bytes | str) -> Outcome:
        """`pcm` as bytes, or as the validated base64 text the client sent (the entity's path):
        text is kept as is in state, so a frame is decoded when appended and when stored, and
        never re-encoded."""
        out = self._enter(state, turn)
        if out.late:
            return out
        if seq < state["next"] or str(seq) in state["pending"]:
            out.duplicate = True
            return out
        if state.get("turn_bytes", 0) >= MAX_TURN_SECONDS * BYTES_PER_SECOND:
            out.too_long = True  # bounded cost: a held key (or a script) cannot stream forever
            return out
        state["pending"][str(seq)] = pcm if isinstance(pcm, str) else base64.b64encode(pcm).decode("ascii")
        held = sum(len(t) for t in state["pending"].values()) * 3 // 4  # base64 → bytes
        if str(state["next"]) not in state["pending"] and held >= MAX_GAP_SECONDS * BYTES_PER_SECOND:
            # a frame is lost for good: a second of audio behind it means the client has moved on
            state["next"] = min(int(s) for s in state["pending"])
        self._drain(state, out)
        return out

    def silence(self, state: dict[str, Any], turn: str, seq: int) -> Outcome:
        out = Outcome()
        if state["turn"] != turn or turn in state["done"]:
            out.late = True
            return out
        if seq < state["next"]:  # the pause is already behind us: close with what is here
            if state["bytes"]:
                self._close(state, out, "silence")
            return out
        state["silence_at"] = seq
        self._drain(state, out)
        return out

    def end(self, state: dict[str, Any], turn: str, frames: int) -> Outcome:
        """Key released: close the turn with what has arrived; frames after this are late.

        `frames` (how many the client sent) is not waited for: a lost frame must not hold the turn."""
        out = self._enter(state, turn)
        if out.late:
            return out
        self._finish_turn(state, out, "end")
        return out

    # -- internals -------------------------------------------------------------------------

    def _enter(self, state: dict[str, Any], turn: str) -> Outcome:
        """Events of a finished turn are late; an event of a new turn closes the open one."""
        out = Outcome()
        if turn in state["done"]:
            out.late = True
        elif state["turn"] != turn:
            self._switch(state, turn, out)
        return out

    def _switch(self, state: dict[str, Any], turn: str, out: Outcome) -> None:
        if state["turn"] is not None:
            self._finish_turn(state, out, "switch")
        state.update(new_state() | {"done": state["done"], "turn": turn})

    def _finish_turn(self, state: dict[str, Any], out: Outcome, reason: str) -> None:
        for seq in sorted(int(s) for s in state["pending"]):  # give up gaps: the turn is over
            self._append(state, seq, state["pending"].pop(str(seq)), out)
        if state["bytes"]:
            self._close(state, out, reason)
        done = [*state["done"], state["turn"]][-KEEP_DONE_TURNS:]
        state.update(new_state() | {"done": done})

    def _drain(self, state: dict[str, Any], out: Outcome) -> None:
        while str(state["next"]) in state["pending"]:
            seq = state["next"]
            self._append(state, seq, state["pending"].pop(str(seq)), out)
            if state["silence_at"] is not None and seq >= state["silence_at"]:
                state["silence_at"] = None
                if state["bytes"]:
                    self._close(state, out, "silence")

    def _append(self, state: dict[str, Any], seq: int, text: str, out: Outcome) -> None:
        lim = self.limits
        pcm = base64.b64decode(text)  # the frame's level decides cuts; the text itself is kept
        if state["first"] is None:
            state["first"] = seq
        state["chunks"].append(text)
        state["inline"] += len(pcm)
        state["bytes"] += len(pcm)
        state["turn_bytes"] = state.get("turn_bytes", 0) + len(pcm)
        state["last"] = seq
        state["next"] = seq + 1
        level = rms(pcm)
        mean = state["energy"] / state["frames"] if state["frames"] else level
        state["energy"] += level
        state["frames"] += 1
        quiet = quietest(pcm) < max(QUIET_RMS, QUIET_RATIO * mean)
        if state["bytes"] >= lim.max_bytes:
            self._close(state, out, "size")
        elif state.get("whole"):
            pass
        elif state["bytes"] >= lim.duration_bytes:
            self._close(state, out, "duration")
        elif lim.pause_after and quiet and state["bytes"] >= lim.pause_after * BYTES_PER_SECOND:
            self._close(state, out, "pause")
        elif state["inline"] >= lim.state_limit:
            block = f"{len(state['blocks']):06d}"
            out.actions.append(Spill(state["turn"], state["segment"], block, self._take_inline(state)))
            state["blocks"].append(block)

    def _take_inline(self, state: dict[str, Any]) -> bytes:
        pcm = b"".join(base64.b64decode(c) for c in state["chunks"])
        state["chunks"], state["inline"] = [], 0
        return pcm

    def _close(self, state: dict[str, Any], out: Outcome, reason: str) -> None:
        out.actions.append(
            ClosedSegment(
                turn=state["turn"],
                index=state["segment"],
                reason=reason,
                blocks=list(state["blocks"]),
                tail=self._take_inline(state),
                nbytes=state["bytes"],
                first_seq=state["first"],
                last_seq=state.get("last", state["first"]),
                level=state["energy"] / state["frames"] if state["frames"] else 0.0,
            )
        )
        state["segment"] += 1
        state["bytes"], state["blocks"], state["first"] = 0, [], None
        state["energy"], state["frames"] = 0.0, 0
