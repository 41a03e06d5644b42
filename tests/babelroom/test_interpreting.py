"""Interpreter with a scripted translator and a recording broadcaster: one transcription per
segment, a retry then a notice on failure, no repeated audio after a retry, history kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from babelroom.history import CaptionHistory, MemoryHistoryStore
from babelroom.interpreting import Interpreter, Speaker
from babelroom.translator import SourceText, TranslatedAudio, TranslatedText

ANA = Speaker("r1", "u1", "Ana", "es")
PCM = b"\x01\x00" * 16_000  # 1 s
VOICE = bytes(range(256)) * 600  # 153,600 bytes of "speech", distinct so repeats show


class Boom(RuntimeError):
    pass


class Scripted:
    """Translator port; `fail` maps a call name ("transcribe" or a language) to how many calls fail,
    `after_audio` makes a failing speak call die after its first audio chunk (a crash mid-segment)."""

    def __init__(self, fail: dict[str, int] | None = None, after_audio: bool = False) -> None:
        self.fail = dict(fail or {})
        self.after_audio = after_audio
        self.calls: list[tuple[str, str]] = []
        self.prompts: list[str | None] = []

    def _should_fail(self, key: str) -> bool:
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            return True
        return False

    async def transcribe(self, pcm16: bytes, source_language: str,
                         prompt: str | None = None) -> AsyncIterator[SourceText]:
        self.calls.append(("transcribe", source_language))
        self.prompts.append(prompt)
        if self._should_fail("transcribe"):
            raise Boom("transcription endpoint down")
        yield SourceText("hola", source_language, final=False)
        yield SourceText("hola a todos", source_language, final=True)

    async def speak(self, text: str, source_language: str, target_language: str) -> AsyncIterator[Any]:
        self.calls.append(("speak", target_language))
        failing = self._should_fail(target_language)
        if failing and not self.after_audio:
            raise Boom(f"{target_language} session refused")
        yield TranslatedText(f"[{target_language}] {text}", target_language, final=False)
        yield TranslatedText(f"[{target_language}] {text}", target_language, final=True)
        for off in range(0, len(VOICE), 24_000):
            yield TranslatedAudio(VOICE[off:off + 24_000], target_language)
            if failing:
                raise Boom(f"{target_language} stream cut")


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def to_group(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))

    def to(self, language: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [m for g, m in self.sent if g == f"r1.{language}" and (kind is None or m["type"] == kind)]


def interpreter(tr: Scripted, history: CaptionHistory | None = None) -> tuple[Interpreter, Recorder]:
    rec = Recorder()
    return Interpreter(tr, rec, codec="pcm16", history=history), rec  # type: ignore[arg-type]


def audio_bytes(msgs: list[dict[str, Any]]) -> bytes:
    import base64

    return b"".join(base64.b64decode(m["pcm"]) for m in sorted(msgs, key=lambda m: m["seq"]))


async def test_a_segment_is_transcribed_once_for_every_language() -> None:
    tr = Scripted()
    it, rec = interpreter(tr)
    usage = await it.segment(ANA, "t1", 0, PCM, {"es", "en", "pt"})
    assert tr.calls.count(("transcribe", "es")) == 1
    assert sorted(c for c in tr.calls if c[0] == "speak") == [("speak", "en"), ("speak", "pt")]
    assert usage.transcriptions == 1 and usage.sessions == 3 and not usage.failures
    (es,) = rec.to("es", "caption")
    assert es["final"] and es["text"] == "hola a todos" and not es["translated"]
    for lang in ("en", "pt"):
        finals = [c for c in rec.to(lang, "caption") if c["final"]]
        assert len(finals) == 1 and finals[0]["text"] == f"[{lang}] hola a todos" and finals[0]["translated"]
        assert audio_bytes(rec.to(lang, "audio")) == VOICE
        assert [a["last"] for a in rec.to(lang, "audio")][-1] is True
    assert not rec.to("es", "audio")


async def test_the_transcription_is_primed_with_names_and_the_rooms_last_lines() -> None:
    tr = Scripted()
    it, _ = interpreter(tr)
    await it.segment(ANA, "t1", 0, PCM, {"es", "en"}, names=["Zoë Kowalczyk", "Ana"])
    assert tr.prompts[-1] == "Ana, Zoë Kowalczyk."  # names only: nothing said yet
    await it.segment(ANA, "t1", 1, PCM, {"es", "en"}, names=["Zoë Kowalczyk", "Ana"])
    assert tr.prompts[-1] == "Ana, Zoë Kowalczyk. hola a todos"
    bob = Speaker("r1", "u2", "Bob", "en")  # an English speaker is primed with English lines
    await it.segment(bob, "t2", 0, PCM, {"es", "en"})
    assert tr.prompts[-1] == "Bob. [en] hola a todos [en] hola a todos"
    assert it.prompt("other-room", "es") is None  # rooms never share context


def test_the_prompt_keeps_the_tail_and_starts_at_a_word() -> None:
    from babelroom.interpreting import PROMPT_CHARS, transcription_prompt

    long = [" ".join(f"word{i}" for i in range(200))]
    out = transcription_prompt(["Ana"], long)
    assert out is not None and len(out) <= PROMPT_CHARS and out.startswith("word") and out.endswith("word199")
    assert transcription_prompt([" ", ""], ["  "]) is None


async def test_a_failure_is_retried_once_and_the_retry_wins() -> None:
    tr = Scripted(fail={"en": 1})
    it, rec = interpreter(tr)
    usage = await it.segment(ANA, "t1", 0, PCM, {"es", "en"})
    assert tr.calls.count(("speak", "en")) == 2 and not usage.failures
    assert not rec.to("en", "notice")
    assert [c["text"] for c in rec.to("en", "caption") if c["final"]] == ["[en] hola a todos"]


async def test_a_crash_mid_stream_is_resumed_without_repeating_audio() -> None:
    tr = Scripted(fail={"en": 1}, after_audio=True)
    it, rec = interpreter(tr)
    await it.segment(ANA, "t1", 0, PCM, {"es", "en"})
    audio = rec.to("en", "audio")
    assert [a["seq"] for a in audio] == list(range(len(audio)))
    assert audio_bytes(audio) == VOICE  # what the first attempt sent is not sent again
    assert not rec.to("en", "notice")


async def test_two_failures_become_a_notice_and_the_next_segment_translates() -> None:
    tr = Scripted(fail={"en": 2})
    it, rec = interpreter(tr)
    usage = await it.segment(ANA, "t1", 0, PCM, {"es", "en", "pt"})
    (notice,) = rec.to("en", "notice")
    assert notice["code"] == "translation_failed" and notice["id"] == "u1:t1:0"
    assert notice["language"] == "en" and notice["original"] == "hola a todos"
    assert not [c for c in rec.to("en", "caption") if c["final"]] and not rec.to("en", "audio")
    assert set(usage.failures) == {"en"}
    assert [c["final"] for c in rec.to("pt", "caption")] == [False, True] and not rec.to("pt", "notice")
    # the notice comes after the interim line and nothing follows it for that segment
    en = rec.to("en")
    assert en[-1]["type"] == "notice"
    await it.segment(ANA, "t1", 1, PCM, {"es", "en", "pt"})
    assert [c["segment"] for c in rec.to("en", "caption") if c["final"]] == [1]
    assert len(rec.to("en", "notice")) == 1


async def test_a_failed_transcription_reaches_every_language_as_a_notice() -> None:
    tr = Scripted(fail={"transcribe": 2})
    it, rec = interpreter(tr)
    await it.segment(ANA, "t1", 0, PCM, {"es", "en"})
    assert tr.calls == [("transcribe", "es"), ("transcribe", "es")]
    for lang in ("es", "en"):
        (n,) = rec.to(lang)
        assert n["type"] == "notice" and n["code"] == "translation_failed" and "original" not in n


async def test_lost_segment_notice_goes_to_every_language() -> None:
    it, rec = interpreter(Scripted())
    await it.lost(ANA, "t9", 3, {"es", "en"})
    for lang in ("es", "en"):
        (n,) = rec.to(lang)
        assert n == {"type": "notice", "code": "segment_lost", "language": lang, "id": "u1:t9:3",
                     "userId": "u1", "displayName": "Ana", "turn": "t9", "segment": 3, "sourceLanguage": "es",
                     "message": n["message"]}


async def test_history_keeps_recent_segments_per_room_in_each_language() -> None:
    history = CaptionHistory(MemoryHistoryStore(), max_entries=3)
    it, _ = interpreter(Scripted(fail={"pt": 2}), history)
    for i in range(5):
        await it.segment(ANA, "t1", i, PCM, {"es", "en", "pt"})
    recent = await history.recent("r1", 10)
    assert [e["segment"] for e in recent] == [2, 3, 4]
    msg = await history.message("r1", "en", limit=2)
    assert msg["type"] == "history" and msg["roomId"] == "r1"
    assert [(c["segment"], c["text"], c["translated"]) for c in msg["captions"]] == [
        (3, "[en] hola a todos", True), (4, "[en] hola a todos", True)]
    es = await history.message("r1", "es")
    assert all(c["text"] == "hola a todos" and not c["translated"] for c in es["captions"])
    assert await history.recent("other", 5) == []


async def test_history_appends_survive_a_write_race() -> None:
    store = MemoryHistoryStore()
    history = CaptionHistory(store)
    real_write = store.write
    raced = []

    async def write(room_id: str, entries: list[dict[str, Any]], version: str | None) -> bool:
        if not raced:  # another worker writes between our read and our write
            raced.append(1)
            await real_write(room_id, [{"id": "other", "at": 0}], version)
        return await real_write(room_id, entries, version)

    store.write = write  # type: ignore[method-assign]
    await history.add("r1", {"id": "mine", "at": 1})
    assert [e["id"] for e in await history.recent("r1")] == ["other", "mine"]


@pytest.mark.parametrize("limit", [0, -1])
async def test_history_limit_zero_is_empty(limit: int) -> None:
    history = CaptionHistory(MemoryHistoryStore())
    await history.add("r1", {"id": "a"})
    assert await history.recent("r1", limit) == []


class Connections:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    async def to_connection(self, connection_id: str, message: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("service unavailable")
        self.sent.append((connection_id, message))


async def test_history_is_sent_to_a_new_connection_only_when_there_is_some() -> None:
    history = CaptionHistory(MemoryHistoryStore())
    conns = Connections()
    assert not await history.send_to(conns, "c1", "r1", "en") and conns.sent == []
    it, _ = interpreter(Scripted(), history)
    await it.segment(ANA, "t1", 0, PCM, {"es", "en"})
    assert await history.send_to(conns, "c1", "r1", "en")
    ((cid, msg),) = conns.sent
    assert cid == "c1" and msg["type"] == "history" and msg["captions"][0]["text"] == "[en] hola a todos"
    assert not await history.send_to(Connections(fail=True), "c2", "r1", "en")  # never raises
