"""babelroom/protocol.py: client events parse into typed events that keep what was validated."""

from __future__ import annotations

import base64

import pytest

from babelroom.protocol import (
    MAX_FRAME_BYTES,
    Audio,
    Chat,
    ProtocolError,
    Rename,
    Silence,
    TurnEnd,
    TurnStart,
    joined,
    left,
    parse_event,
    renamed,
    speaking,
    welcome,
)
from babelroom.rooms import Member

SPEAKER = Member("room0001", "ana00001", "Ana", "es", "es", "speaker")
LISTENER = Member("room0001", "bob00001", "Bob", "en", "en", "listener")


def test_each_event_parses_to_its_type() -> None:
    pcm = b"\x01\x00" * 1600
    text = base64.b64encode(pcm).decode()
    assert parse_event("turn.start", {"turn": "t-1_A"}, SPEAKER) == TurnStart("t-1_A", False)
    assert parse_event("turn.start", {"turn": "t", "whole": True}, SPEAKER) == TurnStart("t", True)
    audio = parse_event("audio", {"turn": "t", "seq": 3, "pcm": text, "rate": 16000}, SPEAKER)
    assert audio == Audio("t", 3, pcm, text)
    assert audio.signal() == {"turn": "t", "seq": 3, "pcm": text}
    assert audio.signal()["pcm"] is text  # forwarded as sent: no re-encoding
    assert parse_event("silence", {"turn": "t", "seq": 2}, SPEAKER) == Silence("t", 2)
    assert parse_event("turn.end", {"turn": "t", "frames": 4}, SPEAKER) == TurnEnd("t", 4)
    assert parse_event("chat", {"text": " hi ", "id": "abc-1"}, LISTENER) == Chat("hi", "abc-1")
    assert parse_event("chat", {"text": "hi"}, LISTENER) == Chat("hi", None)
    assert parse_event("rename", {"displayName": " Bo "}, LISTENER) == Rename("Bo")


@pytest.mark.parametrize("turn", ["", "x" * 65, "a b", "../x", "t.1", "é", 7, None, "a\x00", "abc\n"])
def test_turn_ids_are_1_to_64_safe_characters(turn: object) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_event("turn.start", {"turn": turn}, SPEAKER)
    assert e.value.code == "bad_event"
    assert parse_event("turn.start", {"turn": "x" * 64}, SPEAKER).turn == "x" * 64


@pytest.mark.parametrize("chat_id", ["", "x" * 65, "a/b", 12, None])
def test_chat_ids_are_validated(chat_id: object) -> None:
    with pytest.raises(ProtocolError):
        parse_event("chat", {"text": "hi", "id": chat_id}, SPEAKER)


@pytest.mark.parametrize(("event", "data", "code"), [
    ("audio", {"turn": "t", "seq": 0, "pcm": "not base64!"}, "bad_event"),
    ("audio", {"turn": "t", "seq": 0, "pcm": base64.b64encode(b"\x00" * 3).decode()}, "bad_event"),
    ("audio", {"turn": "t", "seq": 0, "pcm": base64.b64encode(b"\x00" * (MAX_FRAME_BYTES + 2)).decode()},
     "frame_too_large"),
    ("audio", {"turn": "t", "seq": 0, "pcm": "", "rate": 48000}, "bad_rate"),
    ("audio", {"turn": "t", "seq": -1, "pcm": ""}, "bad_event"),
    ("audio", {"turn": "t", "seq": True, "pcm": ""}, "bad_event"),
    ("chat", {"text": "   "}, "bad_event"),
    ("chat", {"text": "x" * 1001}, "bad_event"),
    ("rename", {"displayName": "x" * 41}, "bad_event"),
    ("chat", ["not", "an", "object"], "bad_event"),
    ("wave", {}, "unknown_event"),
])
def test_bad_events_name_the_problem(event: str, data: object, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_event(event, data, SPEAKER)
    assert e.value.code == code


def test_listeners_may_chat_but_not_speak() -> None:
    for event in ("turn.start", "audio", "turn.end", "silence"):
        with pytest.raises(ProtocolError) as e:
            parse_event(event, {"turn": "t"}, LISTENER)
        assert e.value.code == "forbidden"


def test_server_messages() -> None:
    me = SPEAKER.participant()
    assert welcome(me, "room0001", [me]) == {"type": "welcome", **me, "roomId": "room0001", "participants": [me]}
    assert joined(me) == {"type": "presence.joined", "participant": me}
    assert left("u") == {"type": "presence.left", "userId": "u"}
    assert renamed("u", "N") == {"type": "presence.renamed", "userId": "u", "displayName": "N"}
    assert speaking("u", "t", True) == {"type": "speaking", "userId": "u", "turn": "t", "active": True}
