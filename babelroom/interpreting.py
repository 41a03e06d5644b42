"""Segment → translator → language groups: the work of the translator function, host-free.

A segment is transcribed once, then its transcript is translated and spoken once per target
language present in the room (never per listener); the speaker's own language group gets the
source transcript. Everything a listener sees is addressed by caption id
"{userId}:{turn}:{segment}" so interim lines are replaced, not repeated. A model call that fails
is retried once; a second failure reaches the listeners of that language as a `notice`.

The transcription is primed with who is in the room and the room's last lines in the speaker's
language (`transcription_prompt`): names get spelled as the members wrote them, and a topic's
words are preferred over sound-alikes. The lines come from what this worker interpreted
(in memory, no extra storage read on the latency path); a fresh worker starts with names only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import protocol
from .broadcaster import Broadcaster, group_name
from .codec import AudioPacker
from .history import CaptionHistory
from .translator import TranslatedAudio, TranslatedText, Translator

T = TypeVar("T")

log = logging.getLogger(__name__)
FIRST_CHUNK_BYTES = 24_000 * 2 // 5  # 200 ms at 24 kHz: the first sound goes out early
BUSY_RETRY_SECONDS = 0.3
CHUNK_BYTES = 24_000 * 2 * 3 // 5  # then 600 ms: TTS runs ahead of real time, so fewer, fuller messages
PROMPT_LINES = 3  # recent lines per room and language kept for the prompt
PROMPT_CHARS = 400  # ≈ 100 tokens; Whisper reads at most 223 and a short tail is what helps
ROOMS_REMEMBERED = 512  # (room, language) contexts kept per worker, least recently used dropped


def transcription_prompt(names: Iterable[str], recent: Iterable[str]) -> str | None:
    """The previous-text prompt for one segment: the members' names, then the last lines said
    (or interpreted) in the speaker's language, cut to the last PROMPT_CHARS characters."""
    people = sorted({n.strip() for n in names if n and n.strip()})
    parts = ([", ".join(people) + "."] if people else []) + [line.strip() for line in recent if line.strip()]
    text = " ".join(parts)
    if len(text) > PROMPT_CHARS:
        text = text[-PROMPT_CHARS:].split(" ", 1)[-1]  # start at a word
    return text or None


@dataclass(frozen=True)
class Speaker:
    room_id: str
    user_id: str
    display_name: str
    language: str


@dataclass
class Usage:
    """What one segment cost: model sessions, messages published, and what failed."""

    segment_seconds: float = 0.0
    sessions: int = 0  # model sessions opened, retries included
    transcriptions: int = 0  # sessions that heard the audio (1 unless retried)
    started: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # language -> error, after the retry
    messages: int = 0
    audio_bytes_out: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    original: str = ""
    texts: dict[str, str] = field(default_factory=dict)  # the transcript, per language


class _Voice:
    """Translated audio of one segment in one language, across attempts: a retry resumes after
    the audio already sent instead of repeating it."""

    def __init__(self, codec: str) -> None:
        self.packer = AudioPacker(codec)
        self.seq = 0
        self.sent = 0  # PCM bytes already handed to the packer
        self.pending = b""


class Interpreter:
    def __init__(self, translator: Translator, broadcaster: Broadcaster, codec: str = "opus",
                 history: CaptionHistory | None = None) -> None:
        self.translator = translator
        self.broadcaster = broadcaster
        self.codec = codec
        self.history = history  # recent captions per room, for late joiners
        self._context: OrderedDict[tuple[str, str], deque[str]] = OrderedDict()  # (room, language) -> lines
        AudioPacker(codec)  # a wrong codec or a missing encoder fails at start, not mid-sentence

    async def _send(self, usage: Usage, room_id: str, language: str, msg: dict[str, Any]) -> None:
        usage.messages += 1
        await self.broadcaster.to_group(group_name(room_id, language), msg)

    async def _twice(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """A failed model call is retried once, at once (after a short pause when the model said
        it is busy): the listeners hear about a second failure within moments, never silence."""
        try:
            return await attempt()
        except Exception as e:
            log.warning("%s failed (%r); retrying once", what, e)
            if getattr(e, "code", None) == "server_busy":
                await asyncio.sleep(BUSY_RETRY_SECONDS)
            return await attempt()

    async def _notice(self, usage: Usage, speaker: Speaker, base: dict[str, Any], language: str,
                      error: BaseException, original: str) -> None:
        usage.failures[language] = f"{type(error).__name__}: {error}"
        usage.timings.setdefault(f"notice_{language}", time.monotonic() - usage.started)
        what = "transcription" if not original else f"translation into {language}"
        await self._send(usage, speaker.room_id, language, protocol.notice(
            "translation_failed", f"the {what} of this segment failed ({type(error).__name__})",
            language=language, about=base, original=original))

    def _remember(self, room_id: str, texts: dict[str, str]) -> None:
        for language, text in texts.items():
            key = (room_id, language)
            self._context.setdefault(key, deque(maxlen=PROMPT_LINES)).append(text)
            self._context.move_to_end(key)
        while len(self._context) > ROOMS_REMEMBERED:
            self._context.popitem(last=False)

    def prompt(self, room_id: str, language: str, names: Iterable[str] = ()) -> str | None:
        """What the next transcription in `language` is primed with (see `transcription_prompt`)."""
        return transcription_prompt(names, self._context.get((room_id, language), ()))

    async def segment(
        self, speaker: Speaker, turn: str, index: int, pcm: bytes, languages: set[str],
        names: Iterable[str] = (),
    ) -> Usage:
        """Transcribe once, then translate and speak the transcript into each other language.

        `names`: display names of the room's members, for the transcription prompt."""
        usage = Usage(segment_seconds=len(pcm) / 32_000, started=time.monotonic())
        t0 = usage.started
        src = speaker.language
        cid = f"{speaker.user_id}:{turn}:{index}"
        base = {"id": cid, "userId": speaker.user_id, "displayName": speaker.display_name, "turn": turn,
                "segment": index, "sourceLanguage": src}
        targets = sorted(languages - {src})
        prompt = self.prompt(speaker.room_id, src, [*names, speaker.display_name])

        async def transcribe() -> str:
            usage.sessions += 1
            usage.transcriptions += 1
            heard = ""
            async for out in self.translator.transcribe(pcm, src, prompt):
                if out.final:
                    heard = out.text
            return heard

        try:
            original = await self._twice(transcribe, f"transcribing {cid}")
        except Exception as e:
            log.error("transcribing %s failed twice: %r", cid, e)
            await asyncio.gather(*(self._notice(usage, speaker, base, lang, e, "")
                                   for lang in sorted(languages or {src})))
            usage.timings["total"] = time.monotonic() - t0
            return usage
        usage.original = original
        usage.timings["source_text"] = time.monotonic() - t0
        if not original:  # silence or noise: nothing to say, to anyone
            usage.timings["total"] = time.monotonic() - t0
            return usage
        sends = [self._send(usage, speaker.room_id, t, protocol.caption(
            base, language=t, original=original, text="", final=False, translated=True)) for t in targets]
        if src in languages:
            usage.texts[src] = original
            sends.append(self._send(usage, speaker.room_id, src, protocol.caption(
                base, language=src, original=original, text=original, final=True, translated=False)))
        await asyncio.gather(*sends)

        async def one(target: str) -> None:
            voice = _Voice(self.codec)
            try:
                await self._twice(lambda: self._speak(usage, speaker, base, original, target, voice),
                                  f"interpreting {cid} into {target}")
            except Exception as e:
                log.error("interpreting %s into %s failed twice: %r", cid, target, e)
                await self._notice(usage, speaker, base, target, e, original)

        await asyncio.gather(*(one(t) for t in targets))
        self._remember(speaker.room_id, {src: original} | {t: usage.texts[t] for t in targets
                                                         if t in usage.texts and t not in usage.failures})
        if self.history is not None:
            try:
                await self.history.add(speaker.room_id, base | {"original": original, "texts": dict(usage.texts)})
            except Exception as e:  # history is a convenience for late joiners; never fail the segment
                log.warning("history for %s not kept: %r", cid, e)
        usage.timings["total"] = time.monotonic() - t0
        return usage

    async def lost(self, speaker: Speaker, turn: str, index: int, languages: set[str]) -> None:
        """A segment the translator gave up on (poison queue): every language hears it was lost."""
        base = {"id": f"{speaker.user_id}:{turn}:{index}", "userId": speaker.user_id,
                "displayName": speaker.display_name, "turn": turn, "segment": index,
                "sourceLanguage": speaker.language}
        usage = Usage()
        await asyncio.gather(*(self._send(usage, speaker.room_id, lang, protocol.notice(
            "segment_lost", "a part of what was said could not be translated", language=lang, about=base))
            for lang in sorted(languages or {speaker.language})))

    async def _speak(self, usage: Usage, speaker: Speaker, base: dict[str, Any], original: str,
                     target: str, voice: _Voice) -> None:
        """One attempt at one language: text-in session, translated caption and audio out."""
        usage.sessions += 1
        t0 = usage.started
        text, translated, note = "", True, None
        route: str | None = None
        weak = False
        skip = voice.sent  # audio a failed attempt already sent
        voice.pending = b""
        final = False
        async for out in self.translator.speak(original, speaker.language, target):
            if isinstance(out, TranslatedText):
                text = out.text if out.final else text + out.text
                translated, note = out.translated, out.note
                if out.final:
                    final, route, weak = True, out.route, out.weak
                    usage.timings.setdefault(f"text_{target}", time.monotonic() - t0)
            elif isinstance(out, TranslatedAudio):
                pcm = out.pcm
                if skip:
                    pcm, skip = pcm[skip:], max(0, skip - len(pcm))
                voice.pending += pcm
                size = CHUNK_BYTES if voice.seq else FIRST_CHUNK_BYTES
                if len(voice.pending) >= size:
                    usage.timings.setdefault(f"audio_{target}", time.monotonic() - t0)
                    await self._audio(usage, speaker, base, target, voice, False)
        usage.texts[target] = text or original
        await self._send(usage, speaker.room_id, target, protocol.caption(
            base, language=target, original=original, text=text or original, final=True,
            translated=translated and bool(text) and final, note=note, route=route, weak=weak))
        if voice.seq or voice.pending:
            usage.timings.setdefault(f"audio_{target}", time.monotonic() - t0)
            await self._audio(usage, speaker, base, target, voice, True)

    async def _audio(self, usage: Usage, speaker: Speaker, base: dict[str, Any], language: str,
                     voice: _Voice, last: bool) -> None:
        """Sends the pending audio as one `audio` message (unless the encoder holds it back)."""
        pcm, voice.pending = voice.pending, b""
        voice.sent += len(pcm)
        fields = voice.packer.pack(pcm, last)
        if fields is None:
            return
        usage.audio_bytes_out += len(pcm)
        await self._send(usage, speaker.room_id, language, protocol.translated_audio(
            base, language=language, seq=voice.seq, last=last, fields=fields))
        voice.seq += 1

    async def chat(self, speaker: Speaker, message_id: str, text: str, languages: set[str]) -> None:
        src = speaker.language
        base = {"type": "chat", "id": message_id, "userId": speaker.user_id,
                "displayName": speaker.display_name, "sourceLanguage": src, "original": text}
        usage = Usage()

        async def one(target: str) -> None:
            if target == src:
                msg = base | {"language": target, "text": text, "translated": False}
            else:
                try:
                    out = await self.translator.translate_text(text, src, target)
                    msg = base | {"language": target, "text": out.text, "translated": out.translated}
                    if out.note:
                        msg["note"] = out.note
                except Exception as e:  # the line still reaches everyone, marked
                    log.error("chat translation %s→%s failed: %r", src, target, e)
                    msg = base | {"language": target, "text": text, "translated": False,
                                  "note": f"translation failed: {type(e).__name__}"}
            await self._send(usage, speaker.room_id, target, msg)

        await asyncio.gather(*(one(t) for t in sorted(languages or {src})))
