"""Client events and server messages (docs/protocol.md §3–4): validation in, builders out.

Everything a socket sends is checked here before it reaches an entity, so bad input is answered
with a ProtocolError naming the problem and never travels further.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from .rooms import Member

WIRE_RATE = 16_000
MAX_FRAME_BYTES = 8_000  # 250 ms at 16 kHz PCM16
MAX_CHAT = 1_000
SPEAKER_EVENTS = frozenset({"turn.start", "audio", "turn.end", "silence"})
EVENTS = SPEAKER_EVENTS | {"chat", "rename"}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Frame:
    turn: str
    seq: int
    pcm: bytes


def _turn(data: dict[str, Any]) -> str:
    turn = data.get("turn")
    if not isinstance(turn, str) or not 1 <= len(turn) <= 64:
        raise ProtocolError("bad_event", "turn must be a string of 1 to 64 characters")
    return turn


def _seq(data: dict[str, Any], name: str = "seq") -> int:
    seq = data.get(name)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1_000_000:
        raise ProtocolError("bad_event", f"{name} must be a non-negative integer")
    return seq


def parse_event(event: str, data: Any, member: Member) -> dict[str, Any]:
    """Validate one client event; returns a normalized dict (audio: bytes decoded)."""
    if event not in EVENTS:
        raise ProtocolError("unknown_event", f"unknown event {event!r}; expected one of {sorted(EVENTS)}")
    if not isinstance(data, dict):
        raise ProtocolError("bad_event", f"{event} data must be a JSON object")
    if event in SPEAKER_EVENTS and member.role != "speaker":
        raise ProtocolError("forbidden", f"listeners may not send {event}")
    if event == "turn.start":
        return {"turn": _turn(data), "whole": data.get("whole") is True}
    if event == "audio":
        rate = data.get("rate", WIRE_RATE)
        if rate != WIRE_RATE:
            raise ProtocolError("bad_rate", f"audio must be PCM16 mono at {WIRE_RATE} Hz, got rate {rate!r}")
        raw = data.get("pcm")
        if not isinstance(raw, str):
            raise ProtocolError("bad_event", "pcm must be base64 PCM16")
        if len(raw) > (MAX_FRAME_BYTES * 4) // 3 + 4:
            raise ProtocolError("frame_too_large", f"frames are at most {MAX_FRAME_BYTES} bytes (250 ms)")
        try:
            pcm = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ProtocolError("bad_event", f"pcm is not base64: {e}") from None
        if len(pcm) > MAX_FRAME_BYTES:
            raise ProtocolError("frame_too_large", f"frames are at most {MAX_FRAME_BYTES} bytes (250 ms)")
        if len(pcm) % 2:
            raise ProtocolError("bad_event", "pcm must hold whole 16-bit samples")
        return {"turn": _turn(data), "seq": _seq(data), "pcm": pcm}
    if event == "turn.end":
        return {"turn": _turn(data), "frames": _seq(data, "frames")}
    if event == "silence":
        return {"turn": _turn(data), "seq": _seq(data)}
    if event == "chat":
        text = data.get("text")
        if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_CHAT:
            raise ProtocolError("bad_event", f"chat text must be 1 to {MAX_CHAT} characters")
        return {"text": text.strip()}
    name = data.get("displayName")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 40:
        raise ProtocolError("bad_event", "displayName must be 1 to 40 characters")
    return {"displayName": name.strip()}


def error(code: str, message: str, event: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if event:
        msg["event"] = event
    return msg


def speaking(user_id: str, turn: str, active: bool) -> dict[str, Any]:
    return {"type": "speaking", "userId": user_id, "turn": turn, "active": active}


def presence(participants: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "presence", "participants": participants}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- translator messages (captions, translated audio, notices, history) --------------------------
# Built here so every server message has one shape; babelroom.interpreting sends them.


def caption(about: dict[str, Any], *, language: str, original: str, text: str, final: bool,
            translated: bool, note: str | None = None) -> dict[str, Any]:
    """A caption line of segment `about` (id, userId, displayName, turn, segment, sourceLanguage)."""
    msg = about | {"type": "caption", "final": final, "original": original, "language": language,
                   "text": text, "translated": translated}
    if note:
        msg["note"] = note
    return msg


def translated_audio(about: dict[str, Any], *, language: str, seq: int, last: bool,
                     fields: dict[str, Any]) -> dict[str, Any]:
    """One chunk of translated speech; `fields` are the codec's (codec, rate, packets or pcm)."""
    return {"type": "audio", "id": about["id"], "userId": about["userId"], "turn": about["turn"],
            "segment": about["segment"], "language": language, "seq": seq, "last": last, **fields}


def notice(code: str, message: str, *, language: str, about: dict[str, Any] | None = None,
           original: str = "") -> dict[str, Any]:
    """Tells the listeners of `language` that something said did not reach them (never silence).

    code: `translation_failed` (retried once and failed) or `segment_lost` (the segment went to
    the poison queue). `original` is the transcript when it is known.
    """
    msg: dict[str, Any] = {"type": "notice", "code": code, "message": message, "language": language}
    if about:
        msg |= {k: about[k] for k in ("id", "userId", "displayName", "turn", "segment", "sourceLanguage")
                if k in about}
    if original:
        msg["original"] = original
    return msg


def history(room_id: str, language: str, captions: list[dict[str, Any]]) -> dict[str, Any]:
    """The room's recent final captions in `language`, oldest first, for a late or returning listener."""
    return {"type": "history", "roomId": room_id, "language": language, "captions": captions}
