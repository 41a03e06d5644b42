"""A segment whose model calls fail must still reach every listener language, the speaker's own
included, as a notice: the load soak found source-language listeners left in silence (before the
translator's notices, a failed segment was announced to the target languages only).

Fakes are fine here: a function-level test of Interpreter.segment (babelroom/interpreting.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from babelroom.broadcaster import group_name
from babelroom.interpreting import Interpreter, Speaker
from babelroom.translator import SourceText, Spoken, TranslatedText


class Busy(Exception):
    code = "server_busy"


class BusyTranslator:
    """Refuses work as the engine does when its queue is full: the transcription, or one language."""

    def __init__(self, transcribe_ok: bool, refuse: frozenset[str] = frozenset()) -> None:
        self.transcribe_ok = transcribe_ok
        self.refuse = refuse

    async def transcribe(self, pcm16: bytes, source_language: str,
                         prompt: str | None = None) -> AsyncIterator[SourceText]:
        if not self.transcribe_ok:
            raise Busy("engine queue is full")
        yield SourceText("hola a todos", source_language, True)

    async def speak(self, text: str, source_language: str, target_language: str) -> AsyncIterator[Spoken]:
        if target_language in self.refuse:
            raise Busy("engine queue is full")
        yield TranslatedText(f"[{target_language}] {text}", target_language, True)

    async def translate_text(self, text: str, source_language: str, target_language: str) -> TranslatedText:
        raise Busy("engine queue is full")

    async def health(self) -> tuple[bool, str]:
        return True, "busy"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def to_group(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))

    async def to_connection(self, connection_id: str, message: dict[str, Any]) -> None:
        self.sent.append((connection_id, message))

    async def add_to_group(self, group: str, connection_id: str) -> None: ...

    async def remove_from_group(self, group: str, connection_id: str) -> None: ...


async def _segment(translator: BusyTranslator) -> dict[str, list[dict[str, Any]]]:
    """What each language group got for one segment that is final (a final caption or a notice)."""
    out = Recorder()
    await Interpreter(translator, out, codec="pcm16").segment(  # type: ignore[arg-type]
        Speaker("room1", "room1.spk", "Ana", "es"), "t1", 0, b"\0\0" * 16_000, {"es", "en", "pt"})
    return {lang: [m for g, m in out.sent if g == group_name("room1", lang)
                   and (m.get("type") == "notice" or m.get("final"))] for lang in ("es", "en", "pt")}


async def test_a_failed_transcription_reaches_every_language_the_source_included() -> None:
    got = await _segment(BusyTranslator(transcribe_ok=False))
    for lang, msgs in got.items():
        assert [m["type"] for m in msgs] == ["notice"], (lang, got)
        assert msgs[0]["segment"] == 0 and msgs[0]["turn"] == "t1", got


async def test_a_failed_language_gets_a_notice_and_the_others_their_caption() -> None:
    got = await _segment(BusyTranslator(transcribe_ok=True, refuse=frozenset({"pt"})))
    assert [m["type"] for m in got["pt"]] == ["notice"], got
    assert [(m["type"], m["translated"]) for m in got["es"]] == [("caption", False)], got
    assert [(m["type"], m["text"]) for m in got["en"]] == [("caption", "[en] hola a todos")], got
