"""Segment → translator → language groups: the work of the translator function, host-free.

A segment is interpreted once per target language present in the room (never per listener); the
speaker's own language group gets the source transcript. Everything a listener sees is
addressed by caption id "{userId}:{turn}:{segment}" so interim lines are replaced, not repeated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .broadcaster import Broadcaster, group_name
from .codec import AudioPacker
from .translator import SourceText, TranslatedAudio, TranslatedText, Translator

log = logging.getLogger(__name__)
FIRST_CHUNK_BYTES = 24_000 * 2 // 5  # 200 ms at 24 kHz: the first sound goes out early
BUSY_RETRY_SECONDS = 0.3
CHUNK_BYTES = 24_000 * 2 * 3 // 5  # then 600 ms: TTS runs ahead of real time, so fewer, fuller messages


@dataclass(frozen=True)
class Speaker:
    room_id: str
    user_id: str
    display_name: str
    language: str


@dataclass
class Usage:
    """What one segment cost: per-language model seconds and messages published."""

    segment_seconds: float = 0.0
    sessions: int = 0
    messages: int = 0
    audio_bytes_out: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    original: str = ""
    texts: dict[str, str] = field(default_factory=dict)  # the transcript, per language


def hear_languages(room_state: dict[str, Any] | None) -> set[str]:
    """Languages that connected members listen in, from the room entity's state."""
    members = (room_state or {}).get("members", {})
    return {m["hear"] for m in members.values() if m.get("connections")}


def participants(room_state: dict[str, Any] | None) -> list[dict[str, Any]]:
    members = (room_state or {}).get("members", {})
    keys = ("userId", "displayName", "language", "hear", "role")
    return [{k: m[k] for k in keys} for m in members.values() if m.get("connections")]


class Interpreter:
    def __init__(self, translator: Translator, broadcaster: Broadcaster, codec: str = "opus") -> None:
        self.translator = translator
        self.broadcaster = broadcaster
        self.codec = codec
        AudioPacker(codec)  # a wrong codec or a missing encoder fails at start, not mid-sentence

    async def _send(self, usage: Usage, room_id: str, language: str, msg: dict[str, Any]) -> None:
        usage.messages += 1
        await self.broadcaster.to_group(group_name(room_id, language), msg)

    async def segment(
        self, speaker: Speaker, turn: str, index: int, pcm: bytes, languages: set[str]
    ) -> Usage:
        usage = Usage(segment_seconds=len(pcm) / 32_000)
        t0 = time.monotonic()
        src = speaker.language
        cid = f"{speaker.user_id}:{turn}:{index}"
        base = {"id": cid, "userId": speaker.user_id, "displayName": speaker.display_name, "turn": turn,
                "segment": index, "sourceLanguage": src}
        targets = sorted(languages - {src}) or [src]
        source_sent = asyncio.Event()
        source_text: list[str] = []

        async def publish_source(text: str) -> None:
            if source_sent.is_set():
                return
            source_sent.set()
            source_text.append(text)
            usage.original = text
            usage.timings.setdefault("source_text", time.monotonic() - t0)
            if src in languages and text:
                await self._send(usage, speaker.room_id, src, base | {
                    "type": "caption", "final": True, "original": text, "language": src, "text": text,
                    "translated": False})

        async def one(target: str) -> None:
            usage.sessions += 1
            original, text, seq, pending = "", "", 0, b""
            packer = AudioPacker(self.codec)
            note: str | None = None
            translated = True
            async for out in self.translator.interpret(pcm, src, target):
                if isinstance(out, SourceText):
                    if not out.final:
                        continue
                    original = out.text
                    await publish_source(original)
                    if target != src and original:
                        await self._send(usage, speaker.room_id, target, base | {
                            "type": "caption", "final": False, "original": original, "language": target,
                            "text": "", "translated": True})
                elif isinstance(out, TranslatedText):
                    text = out.text if out.final else text + out.text
                    translated, note = out.translated, out.note
                    if out.final:
                        usage.timings.setdefault(f"text_{target}", time.monotonic() - t0)
                elif isinstance(out, TranslatedAudio):
                    pending += out.pcm
                    size = CHUNK_BYTES if seq else FIRST_CHUNK_BYTES
                    if len(pending) >= size:
                        usage.timings.setdefault(f"audio_{target}", time.monotonic() - t0)
                        if await self._audio(usage, speaker, base, target, seq, packer, pending, False):
                            seq += 1
                        pending = b""
            if target == src:
                return
            usage.texts[target] = text or original
            if original or text:
                msg = base | {"type": "caption", "final": True, "original": original, "language": target,
                              "text": text or original, "translated": translated}
                if note:
                    msg["note"] = note
                await self._send(usage, speaker.room_id, target, msg)
            if seq or pending:
                usage.timings.setdefault(f"audio_{target}", time.monotonic() - t0)
                await self._audio(usage, speaker, base, target, seq, packer, pending, True)

        async def attempt(target: str) -> None:
            try:
                await one(target)
            except Exception as e:  # a busy model refuses before it says anything: one retry
                if getattr(e, "code", None) != "server_busy":
                    raise
                await asyncio.sleep(BUSY_RETRY_SECONDS)
                await one(target)

        results = await asyncio.gather(*(attempt(t) for t in targets), return_exceptions=True)
        for target, r in zip(targets, results, strict=True):
            if isinstance(r, BaseException):
                log.error("interpreting %s into %s failed: %r", cid, target, r)
                await self._send(usage, speaker.room_id, target, base | {
                    "type": "caption", "final": True, "original": "".join(source_text), "language": target,
                    "text": "".join(source_text), "translated": False,
                    "note": f"translation failed: {type(r).__name__}"})
        usage.timings["total"] = time.monotonic() - t0
        return usage

    async def _audio(self, usage: Usage, speaker: Speaker, base: dict[str, Any], language: str, seq: int,
                     packer: AudioPacker, pcm: bytes, last: bool) -> bool:
        """Sends one `audio` message; False when the encoder had nothing to send yet."""
        fields = packer.pack(pcm, last)
        if fields is None:
            return False
        usage.audio_bytes_out += len(pcm)
        await self._send(usage, speaker.room_id, language, {
            "type": "audio", "id": base["id"], "userId": speaker.user_id, "turn": base["turn"],
            "segment": base["segment"], "language": language, "seq": seq, "last": last, **fields})
        return True

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
