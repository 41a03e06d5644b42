"""The one wire module (docs/protocol.md §3–4): typed client events in, every server message out.

Everything a socket sends is checked here before it reaches an entity, so bad input is answered
with a ProtocolError naming the problem and never travels further. A parsed event keeps what was
validated: `Audio` holds the decoded PCM (the decode *is* the validation) and the base64 text the
client sent, which is forwarded to the speaker entity as is, so no frame is ever re-encoded.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from .rooms import Member

WIRE_RATE = 16_000
MAX_FRAME_BYTES = 8_000  # 250 ms at 16 kHz PCM16
MAX_CHAT = 1_000
MAX_NAME = 40
SPEAKER_EVENTS = frozenset({"turn.start", "audio", "turn.end", "silence"})
EVENTS = SPEAKER_EVENTS | {"chat", "rename"}
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # turn ids and chat ids: safe in blob names, queue ids, logs


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- client events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnStart:
    turn: str
    whole: bool = False  # one segment per turn (the benchmark baseline)


@dataclass(frozen=True)
class Audio:
    turn: str
    seq: int
    pcm: bytes  # decoded, checked PCM16
    text: str  # the base64 the client sent: what the entity signal carries, never re-encoded

    def signal(self) -> dict[str, Any]:
        """The speaker entity's `frame` input: who sent it is the entity's key, not the frame."""
        return {"turn": self.turn, "seq": self.seq, "pcm": self.text}


@dataclass(frozen=True)
class Silence:
    turn: str
    seq: int


@dataclass(frozen=True)
class TurnEnd:
    turn: str
    frames: int


@dataclass(frozen=True)
class Chat:
    text: str
    id: str | None = None  # client-generated idempotency key; None from clients that send none


@dataclass(frozen=True)
class Rename:
    display_name: str


ClientEvent = TurnStart | Audio | Silence | TurnEnd | Chat | Rename


def _id(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise ProtocolError("bad_event", f"{name} must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -")
    return value


def _seq(data: dict[str, Any], name: str = "seq") -> int:
    seq = data.get(name)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1_000_000:
        raise ProtocolError("bad_event", f"{name} must be a non-negative integer")
    return seq


def _audio(data: dict[str, Any]) -> Audio:
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
    return Audio(_id(data, "turn"), _seq(data), pcm, raw)


def _chat(data: dict[str, Any]) -> Chat:
    text = data.get("text")
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_CHAT:
        raise ProtocolError("bad_event", f"chat text must be 1 to {MAX_CHAT} characters")
    return Chat(text.strip(), _id(data, "id") if "id" in data else None)


def parse_event(event: str, data: Any, member: Member) -> ClientEvent:
    """Validate one client event into its typed form, or raise ProtocolError."""
    if event not in EVENTS:
        raise ProtocolError("unknown_event", f"unknown event {event!r}; expected one of {sorted(EVENTS)}")
    if not isinstance(data, dict):
        raise ProtocolError("bad_event", f"{event} data must be a JSON object")
    if event in SPEAKER_EVENTS and member.role != "speaker":
        raise ProtocolError("forbidden", f"listeners may not send {event}")
    if event == "turn.start":
        return TurnStart(_id(data, "turn"), data.get("whole") is True)
    if event == "audio":
        return _audio(data)
    if event == "turn.end":
        return TurnEnd(_id(data, "turn"), _seq(data, "frames"))
    if event == "silence":
        return Silence(_id(data, "turn"), _seq(data))
    if event == "chat":
        return _chat(data)
    name = data.get("displayName")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise ProtocolError("bad_event", f"displayName must be 1 to {MAX_NAME} characters")
    return Rename(name.strip())


# -- server messages ---------------------------------------------------------------------------


def error(code: str, message: str, event: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if event:
        msg["event"] = event
    return msg


def speaking(user_id: str, turn: str, active: bool) -> dict[str, Any]:
    return {"type": "speaking", "userId": user_id, "turn": turn, "active": active}


def welcome(me: dict[str, Any], room_id: str, participants: list[dict[str, Any]]) -> dict[str, Any]:
    """The newcomer's snapshot: the only message that carries the whole participant list."""
    return {"type": "welcome", **me, "roomId": room_id, "participants": participants}


def joined(participant: dict[str, Any]) -> dict[str, Any]:
    return {"type": "presence.joined", "participant": participant}


def left(user_id: str) -> dict[str, Any]:
    return {"type": "presence.left", "userId": user_id}


def renamed(user_id: str, display_name: str) -> dict[str, Any]:
    return {"type": "presence.renamed", "userId": user_id, "displayName": display_name}


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
