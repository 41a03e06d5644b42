"""OpenAI Realtime-compatible WebSocket endpoint in front of the local engine.

The translator function talks to GPT-4o Realtime with the openai SDK; offline, the same SDK code
points here (`OPENAI_BASE_URL=http://127.0.0.1:7073/v1`, or an Azure-style endpoint). Only the
subset babelroom uses is served (docs/protocol.md §5); anything else is answered with a
Realtime `error` event and the socket stays open.

    python -m babelroom.engine.server --host 127.0.0.1 --port 7073
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import signal
import sys
import time
from typing import Any

from aiohttp import WSMsgType, web

from .models import MissingModelError
from .pipeline import Busy, Engine, Recognition

API_RATE = 24_000
AUDIO_CHUNK_BYTES = API_RATE * 2 // 2  # ≤ 0.5 s of PCM16 per output_audio.delta
MAX_BUFFER_BYTES = 15 * 1024 * 1024  # the Realtime API's input buffer limit
DEFAULT_MODEL = "gpt-realtime"
ENGINE_KEY: web.AppKey[Engine] = web.AppKey("engine", Engine)


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class ClientError(Exception):
    """A client event we refuse: becomes a Realtime `error` event, the session continues."""

    def __init__(self, code: str, message: str, param: str | None = None,
                 error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.error_type = code, message, param, error_type


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def _route_quality(route_info: dict[str, Any] | None) -> dict[str, Any]:
    """The extra `route_quality` field our text events carry (legs, via, quality, weak), or none."""
    return {"route_quality": route_info} if route_info else {}


def _decode_audio(event: dict[str, Any]) -> bytes:
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise ClientError("missing_required_parameter", "`audio` (base64 PCM16) is required", "audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClientError("invalid_value", "`audio` is not valid base64", "audio") from exc


class BaseSession:
    """Socket plumbing shared by conversation and translation sessions."""

    def __init__(self, ws: web.WebSocketResponse, engine: Engine, model: str) -> None:
        self.ws = ws
        self.engine = engine
        self.model = model
        self.id = _id("sess")
        self._send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", _id("event"))
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_str(json.dumps(event, ensure_ascii=False))

    async def error(self, code: str, message: str, client_event_id: str | None = None,
                    param: str | None = None, error_type: str = "invalid_request_error") -> None:
        await self.send({
            "type": "error",
            "error": {"type": error_type, "code": code, "message": message, "param": param,
                      "event_id": client_event_id},
        })

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def run(self) -> None:
        await self.start()
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await self.error("invalid_json", "binary frames are not supported; send JSON text")
                continue
            try:
                event = json.loads(msg.data)
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise ValueError("not an event object")
            except ValueError:
                await self.error("invalid_json", "expected a JSON object with a string `type`")
                continue
            try:
                await self.handle(event)
            except ClientError as exc:
                await self.error(exc.code, exc.message, event.get("event_id"), exc.param, exc.error_type)
            except Busy as exc:
                await self.error("server_busy", str(exc), event.get("event_id"), error_type="rate_limited")
            except Exception as exc:  # never drop the socket on our own bug
                await self.error("server_error", f"{type(exc).__name__}: {exc}", event.get("event_id"),
                                 error_type="server_error")
            if self.ws.closed:
                break
        for task in list(self.tasks):
            task.cancel()

    async def start(self) -> None:
        raise NotImplementedError

    async def handle(self, event: dict[str, Any]) -> None:
        raise NotImplementedError


class RealtimeSession(BaseSession):
    """A GA `realtime` conversation session, driven by the client (no server VAD)."""

    def __init__(self, ws: web.WebSocketResponse, engine: Engine, model: str) -> None:
        super().__init__(ws, engine, model)
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "prompt": None,
            "expires_at": int(time.time()) + 3600,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": API_RATE},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": None,
                },
                "output": {"format": {"type": "audio/pcm", "rate": API_RATE}, "voice": "alloy", "speed": 1.0},
            },
            "include": None,
        }
        self.buffer = bytearray()
        self.items: list[dict[str, Any]] = []
        self.response: asyncio.Task[None] | None = None
        self.response_done_sent = True

    @property
    def input_rate(self) -> int:
        fmt = self.session["audio"]["input"].get("format") or {}
        return int(fmt.get("rate") or API_RATE)

    async def start(self) -> None:
        await self.send({"type": "session.created", "session": self.session})

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        eid = event.get("event_id")
        if kind == "session.update":
            await self.update(event)
        elif kind == "input_audio_buffer.append":
            pcm = _decode_audio(event)
            if len(self.buffer) + len(pcm) > MAX_BUFFER_BYTES:
                raise ClientError("input_audio_buffer_too_large", "the input audio buffer is limited to 15 MiB")
            self.buffer += pcm
        elif kind == "input_audio_buffer.commit":
            await self.commit(eid)
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            await self.create_item(event)
        elif kind == "response.create":
            if self.response is not None and not self.response.done():
                raise ClientError("conversation_already_has_active_response",
                                  "a response is in progress; wait for response.done")
            meta = (event.get("response") or {}).get("metadata") or {}
            source = meta.get("source_language") or self._transcription_language()
            if source and meta.get("target_language"):  # MT processes load while Whisper runs
                self.engine.prepare(str(source), str(meta["target_language"]))
            self.response_done_sent = False
            self.response = self.spawn(self.respond(event))
        elif kind == "response.cancel":
            if self.response is not None and not self.response.done():
                self.response.cancel()
                await asyncio.wait([self.response])
                if not self.response_done_sent:  # cancelled before it ran: still close it properly
                    await self._done({"object": "realtime.response", "id": _id("resp"), "status": "cancelled",
                                      "status_details": {"type": "cancelled", "reason": "client_cancelled"},
                                      "output": [], "metadata": None}, 0, "", 0)
        else:
            raise ClientError("unsupported_event", f"event type {kind!r} is not supported by this endpoint",
                              "type")

    async def update(self, event: dict[str, Any]) -> None:
        patch = event.get("session")
        if not isinstance(patch, dict):
            raise ClientError("missing_required_parameter", "`session` object is required", "session")
        patch = dict(patch)
        if patch.get("type", "realtime") != "realtime":
            raise ClientError("invalid_value", "session.type cannot be changed on this path", "session.type")
        fmt = ((patch.get("audio") or {}).get("input") or {}).get("format")
        if isinstance(fmt, dict):
            if fmt.get("type", "audio/pcm") != "audio/pcm":
                raise ClientError("invalid_value", "only audio/pcm input is supported",
                                  "session.audio.input.format.type")
            if int(fmt.get("rate") or API_RATE) not in (16_000, 24_000):
                raise ClientError("invalid_value", "input rate must be 24000 (or 16000)",
                                  "session.audio.input.format.rate")
        _deep_merge(self.session, patch)
        self.session["audio"]["input"]["turn_detection"] = None  # commits are client-driven here
        await self.send({"type": "session.updated", "session": self.session})

    async def commit(self, client_event_id: str | None) -> None:
        rate = self.input_rate
        if len(self.buffer) < rate * 2 // 10:  # the API refuses < 100 ms
            self.buffer.clear()
            raise ClientError("input_audio_buffer_commit_empty",
                              "buffer too small: commit needs at least 100 ms of audio")
        pcm, self.buffer = bytes(self.buffer), bytearray()
        item = {"id": _id("item"), "kind": "audio", "pcm": pcm, "rate": rate}
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        await self.send({"type": "input_audio_buffer.committed", "item_id": item["id"],
                         "previous_item_id": previous})
        item["task"] = self.spawn(self.transcribe(item))

    def _transcription(self, key: str) -> str | None:
        """One setting of `session.audio.input.transcription`, if the client set it."""
        tr = self.session["audio"]["input"].get("transcription") or {}
        value = tr.get(key) if isinstance(tr, dict) else None
        return str(value) if value else None

    def _transcription_language(self) -> str | None:
        return self._transcription("language")

    def _transcription_prompt(self) -> str | None:
        """`session.audio.input.transcription.prompt`: the room's names and recent captions,
        passed to Whisper as its previous-text prompt. `instructions` are the interpreter's task
        for GPT-4o, not words the speaker says, so they are not used as a prompt."""
        return self._transcription("prompt")

    async def transcribe(self, item: dict[str, Any]) -> Recognition | None:
        """Recognize a committed item once; emits the input transcription events."""
        try:
            rec = await self.engine.recognize(item["pcm"], item["rate"], self._transcription_language(),
                                              self._transcription_prompt())
        except Busy as exc:
            await self.error("server_busy", str(exc), error_type="rate_limited")
            item["error"] = {"type": "rate_limited", "code": "server_busy", "message": str(exc)}
        except Exception as exc:  # our own bug: the client hears it at once, not after its timeout
            item["error"] = {"type": "server_error", "code": "server_error", "message": f"{type(exc).__name__}: {exc}"}
        if "error" in item:
            await self.send({"type": "conversation.item.input_audio_transcription.failed",
                             "item_id": item["id"], "content_index": 0, "error": item["error"]})
            return None
        text = rec.transcript.text
        if text:
            await self.send({"type": "conversation.item.input_audio_transcription.delta",
                             "item_id": item["id"], "content_index": 0, "delta": text})
        seconds = len(item["pcm"]) / 2 / item["rate"]
        await self.send({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item["id"], "content_index": 0, "transcript": text,
            "language": rec.transcript.language if text else None,
            "usage": {"type": "duration", "seconds": round(seconds, 3)},
        })
        return rec

    async def create_item(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ClientError("missing_required_parameter", "`item` is required", "item")
        if item.get("type", "message") != "message" or item.get("role") != "user":
            raise ClientError("unsupported_item", "only user message items are supported", "item.type")
        texts = [c.get("text", "") for c in item.get("content") or []
                 if isinstance(c, dict) and c.get("type") == "input_text"]
        if not texts:
            raise ClientError("unsupported_content", "only `input_text` content is supported", "item.content")
        stored = {"id": item.get("id") or _id("item"), "kind": "text", "text": " ".join(texts).strip()}
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(stored)
        await self.send({
            "type": "conversation.item.created", "previous_item_id": previous,
            "item": {"id": stored["id"], "object": "realtime.item", "type": "message", "role": "user",
                     "status": "completed", "content": [{"type": "input_text", "text": stored["text"]}]},
        })

    async def respond(self, event: dict[str, Any]) -> None:
        """One response: translate the latest item into response.metadata.target_language."""
        params = event.get("response") or {}
        meta: dict[str, str] = {str(k): str(v) for k, v in (params.get("metadata") or {}).items()}
        modalities = params.get("output_modalities") or self.session.get("output_modalities") or ["audio"]
        self.response_done_sent = False
        rid = _id("resp")
        out_item = _id("item")
        response: dict[str, Any] = {
            "object": "realtime.response", "id": rid, "status": "in_progress", "status_details": None,
            "output": [], "conversation_id": "conv_" + self.id, "output_modalities": modalities,
            "metadata": meta or None, "usage": None,
        }
        await self.send({"type": "response.created", "response": dict(response)})
        text_out, audio_bytes, in_chars = "", 0, 0
        try:
            target = meta.get("target_language") or ""
            if not target:
                raise ClientError("missing_target_language",
                                  "set response.metadata.target_language (e.g. \"en\")",
                                  "response.metadata.target_language")
            if not self.items:
                raise ClientError("input_missing", "nothing to respond to: commit audio or create an item")
            item = self.items[-1]
            source = meta.get("source_language") or self._transcription_language() or ""
            if item["kind"] == "audio":
                rec = await asyncio.shield(item["task"])  # a cancelled response must not cancel ASR
                if rec is None:  # recognition failed; its error event has been sent
                    response.update(status="failed", metadata=meta or None, status_details={
                        "type": "failed", "error": item["error"]})
                    await self._done(response, 0, "", 0)
                    return
                text = rec.transcript.text
                source = source or rec.transcript.language
                meta["asr_ms"] = str(round(1000 * rec.timings.get("asr", 0.0)))
                meta["asr_cached"] = "true" if rec.cached else "false"
            else:
                text = item["text"]
                if not source:
                    raise ClientError("missing_source_language",
                                      "text items need response.metadata.source_language",
                                      "response.metadata.source_language")
            in_chars = len(text)
            meta["source_language"] = source
            if not text:
                meta["no_speech"] = "true"
                response.update(status="completed", metadata=meta)
            else:
                translation = await self.engine.translate(text, source, target)
                text_out = translation.text
                meta["translated"] = "true" if translation.translated else "false"
                if translation.note:
                    meta["note"] = translation.note
                if translation.route:
                    meta["route"] = translation.route
                if translation.route_info:  # metadata values are strings in the Realtime API
                    meta["route_legs"] = str(translation.route_info["legs"])
                    meta["route_weak"] = "true" if translation.weak else "false"
                audio_wanted = "audio" in modalities
                voice = (audio_wanted and translation.translated and target != source
                         and self.engine.can_speak(target))
                if audio_wanted and translation.translated and not voice and target != source:
                    meta["note"] = f"no voice for {target}"
                if translation.translated:  # no-model pairs: only response.done carries text + note
                    audio_bytes = await self._stream(rid, out_item, text_out, target, audio_wanted, voice,
                                                     translation.route_info)
                content = [{"type": "output_audio" if audio_wanted else "output_text",
                            ("transcript" if audio_wanted else "text"): text_out}]
                response["output"] = [{"id": out_item, "object": "realtime.item", "type": "message",
                                       "role": "assistant", "status": "completed", "content": content}]
                response.update(status="completed", metadata=meta)
        except asyncio.CancelledError:
            response.update(status="cancelled", metadata=meta,
                            status_details={"type": "cancelled", "reason": "client_cancelled"})
            await self._done(response, in_chars, text_out, audio_bytes)
            raise
        except (ClientError, Busy) as exc:
            if isinstance(exc, Busy):
                code, message, etype = "server_busy", str(exc), "rate_limited"
            else:
                code, message, etype = exc.code, exc.message, exc.error_type
            await self.error(code, message, event.get("event_id"), error_type=etype)
            response.update(status="failed", metadata=meta or None,
                            status_details={"type": "failed", "error": {"type": etype, "code": code,
                                                                        "message": message}})
        except Exception as exc:
            await self.error("server_error", f"{type(exc).__name__}: {exc}", event.get("event_id"),
                             error_type="server_error")
            response.update(status="failed", metadata=meta or None,
                            status_details={"type": "failed", "error": {"type": "server_error",
                                                                        "code": "server_error",
                                                                        "message": str(exc)}})
        await self._done(response, in_chars, text_out, audio_bytes)

    async def _stream(self, rid: str, item_id: str, text: str, target: str, audio_wanted: bool,
                      voice: bool, route_info: dict[str, Any] | None = None) -> int:
        """Translated text first (transcript deltas per sentence), then audio sentence by sentence.

        Text events carry an extra `route_quality` object (legs, via, quality, weak) that the
        openai SDK keeps on the event as an extra attribute, so a caption can say it came
        from a weak route before response.done arrives."""
        from .mt import split_sentences

        ids = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        rq = _route_quality(route_info)
        sentences = split_sentences(text) or [text]
        if not audio_wanted:
            for i, s in enumerate(sentences):
                await self.send({"type": "response.output_text.delta", **ids, **rq, "delta": (" " if i else "") + s})
            await self.send({"type": "response.output_text.done", **ids, **rq, "text": text})
            return 0
        for i, s in enumerate(sentences):
            await self.send({"type": "response.output_audio_transcript.delta", **ids, **rq,
                             "delta": (" " if i else "") + s})
        await self.send({"type": "response.output_audio_transcript.done", **ids, **rq, "transcript": text})
        total = 0
        if voice:
            async for pcm in self.engine.speak(text, target):
                for off in range(0, len(pcm), AUDIO_CHUNK_BYTES):
                    chunk = pcm[off : off + AUDIO_CHUNK_BYTES]
                    await self.send({"type": "response.output_audio.delta", **ids,
                                     "delta": base64.b64encode(chunk).decode()})
                    total += len(chunk)
            await self.send({"type": "response.output_audio.done", **ids})
        return total

    async def _done(self, response: dict[str, Any], in_chars: int, text_out: str, audio_bytes: int) -> None:
        # Token counts are estimates (≈ 4 characters a token, 1 audio token per 50 ms) so
        # callers that meter usage see plausible, stable numbers.
        audio_tokens = audio_bytes // (API_RATE * 2 // 20)
        text_tokens = max(0, (len(text_out) + 3) // 4)
        in_tokens = max(0, (in_chars + 3) // 4)
        response["usage"] = {
            "total_tokens": in_tokens + text_tokens + audio_tokens,
            "input_tokens": in_tokens,
            "output_tokens": text_tokens + audio_tokens,
            "input_token_details": {"text_tokens": in_tokens, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        }
        self.response_done_sent = True
        await self.send({"type": "response.done", "response": response})


class TranslationSession(BaseSession):
    """A `translation` session (`client.realtime.translations`): continuous audio in, the
    engine cuts segments at pauses (Silero VAD) and streams transcripts and voice back."""

    SILENCE_MS = 500
    MAX_SEGMENT_S = 12
    CHECK_EVERY_S = 0.3

    def __init__(self, ws: web.WebSocketResponse, engine: Engine, model: str) -> None:
        super().__init__(ws, engine, model)
        self.session: dict[str, Any] = {
            "id": self.id, "object": "realtime.translation_session", "type": "translation", "model": model,
            "expires_at": int(time.time()) + 3600,
            "audio": {"input": {"transcription": None, "noise_reduction": None},
                      "output": {"language": None}},
        }
        self.buffer = bytearray()
        self.unchecked = 0
        self.received = 0  # bytes of input so far, for elapsed_ms
        self.segments: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.worker = self.spawn(self._work())
        await self.send({"type": "session.created", "session": self.session})

    async def handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "session.update":
            patch = event.get("session")
            if not isinstance(patch, dict):
                raise ClientError("missing_required_parameter", "`session` object is required", "session")
            patch = {k: v for k, v in patch.items() if k not in ("type", "model")}
            _deep_merge(self.session, patch)
            await self.send({"type": "session.updated", "session": self.session})
        elif kind == "session.input_audio_buffer.append":
            pcm = _decode_audio(event)
            self.buffer += pcm
            self.received += len(pcm)
            self.unchecked += len(pcm)
            if self.unchecked >= API_RATE * 2 * self.CHECK_EVERY_S:
                self.unchecked = 0
                await self._maybe_cut()
        elif kind == "session.close":
            if len(self.buffer) >= API_RATE * 2 // 5:
                await self.segments.put(bytes(self.buffer))
            self.buffer.clear()
            await self.segments.put(None)
            if self.worker is not None:
                await self.worker
            await self.send({"type": "session.closed"})
            await self.ws.close()
        else:
            raise ClientError("unsupported_event", f"event type {kind!r} is not supported in translation sessions",
                              "type")

    async def _maybe_cut(self) -> None:
        from .audio import pcm16_to_float, resample

        def check(pcm: bytes) -> tuple[bool, int]:  # off the event loop: ≈ 10-150 ms for 1-12 s
            return self.engine.vad.trailing_silence(resample(pcm16_to_float(pcm), API_RATE, 16_000))

        speech, trailing = await asyncio.get_running_loop().run_in_executor(None, check, bytes(self.buffer))
        seconds = len(self.buffer) / 2 / API_RATE
        if not speech:
            keep = API_RATE * 2 // 2  # keep 0.5 s: speech may be starting
            if len(self.buffer) > keep:
                del self.buffer[: len(self.buffer) - keep]
            return
        if trailing >= 16 * self.SILENCE_MS or seconds >= self.MAX_SEGMENT_S:
            await self.segments.put(bytes(self.buffer))
            self.buffer.clear()

    def _elapsed_ms(self) -> int:
        return self.received * 1000 // (API_RATE * 2)

    async def _work(self) -> None:
        while (pcm := await self.segments.get()) is not None:
            try:
                await self._interpret(pcm)
            except Busy as exc:
                await self.error("server_busy", str(exc), error_type="rate_limited")

    async def _interpret(self, pcm: bytes) -> None:
        rec = await self.engine.recognize(pcm, API_RATE, None)
        text = rec.transcript.text
        if not text:
            return
        await self.send({"type": "session.input_transcript.delta", "delta": text + " ",
                         "elapsed_ms": self._elapsed_ms()})
        target = (self.session["audio"].get("output") or {}).get("language")
        if not target:
            await self.error("missing_target_language", "set session.audio.output.language",
                             param="session.audio.output.language")
            return
        source = rec.transcript.language
        translation = await self.engine.translate(text, source, target)
        await self.send({"type": "session.output_transcript.delta", "delta": translation.text + " ",
                         "elapsed_ms": self._elapsed_ms(),
                         **_route_quality(translation.route_info)})
        if not translation.translated:
            await self.error("no_translation_model", translation.note or f"no model for {source}→{target}",
                             error_type="invalid_request_error")
            return
        if target == source or not self.engine.can_speak(target):
            return
        async for chunk in self.engine.speak(translation.text, target):
            await self.send({"type": "session.output_audio.delta", "delta": base64.b64encode(chunk).decode(),
                             "sample_rate": API_RATE, "channels": 1, "format": "pcm16",
                             "elapsed_ms": self._elapsed_ms()})


def _session_for(request: web.Request) -> type[BaseSession]:
    return TranslationSession if request.path.rstrip("/").endswith("/translations") else RealtimeSession


def _url_refusal(request: web.Request) -> str | None:
    """Why a realtime URL is refused, as Azure would: only the GA v1 shape is served for Azure.

    Azure OpenAI GA: `/openai/v1/realtime?model=<deployment>`, no api-version. The preview shape
    `/openai/realtime?api-version=...&deployment=...` is refused so a client that regresses to it
    (e.g. AsyncAzureOpenAI with api_version) fails in the twin, not first on Azure.
    """
    if request.path.startswith("/openai/realtime"):
        return ("preview realtime URL (/openai/realtime?api-version=...&deployment=...) is not served; "
                "use the GA v1 endpoint /openai/v1/realtime?model=<deployment> without api-version")
    if request.path.startswith("/openai/v1/"):
        if "api-version" in request.query or "deployment" in request.query:
            return "the GA v1 realtime endpoint takes ?model=<deployment>, not api-version or deployment"
        if not request.query.get("model"):
            return "?model=<deployment> is required on /openai/v1/realtime"
    return None


async def realtime_handler(request: web.Request) -> web.StreamResponse:
    """WebSocket upgrade on the OpenAI (/v1/realtime?model=) and Azure GA (/openai/v1/realtime?model=) paths."""
    engine = request.app[ENGINE_KEY]
    if refusal := _url_refusal(request):
        return web.json_response({"error": {"type": "invalid_request_error", "code": "unsupported_url",
                                             "message": refusal}}, status=400)
    model = request.query.get("model") or DEFAULT_MODEL
    ws = web.WebSocketResponse(max_msg_size=0, heartbeat=30)
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {"error": {"type": "invalid_request_error", "code": "websocket_required",
                       "message": "connect with a WebSocket (openai SDK: client.realtime.connect)"}},
            status=426,
        )
    await ws.prepare(request)
    await _session_for(request)(ws, engine, model).run()
    return ws


async def health_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE_KEY].health(), dumps=lambda o: json.dumps(o, ensure_ascii=False))


def create_app(engine: Engine) -> web.Application:
    """The aiohttp application; `engine` must be loaded."""
    app = web.Application()
    app[ENGINE_KEY] = engine
    for base in ("/v1/realtime", "/openai/realtime", "/realtime", "/openai/v1/realtime"):
        app.router.add_get(base, realtime_handler)
        app.router.add_get(base + "/translations", realtime_handler)
    app.router.add_get("/health", health_handler)
    app.router.add_get("/v1/health", health_handler)
    return app


async def serve(engine: Engine, host: str = "127.0.0.1", port: int = 7073) -> tuple[web.AppRunner, int]:
    """Start the endpoint in the running loop; returns the runner (call `.cleanup()`) and the port."""
    runner = web.AppRunner(create_app(engine), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = sockets[0].getsockname()[1] if sockets else port
    return runner, actual


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babelroom.engine.server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7073)
    args = parser.parse_args(argv)
    try:
        engine = Engine().load()
    except MissingModelError as exc:
        print(f"babelroom engine cannot start: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        runner, port = await serve(engine, args.host, args.port)
        print(f"[engine] realtime endpoint on ws://{args.host}:{port}/v1/realtime "
              f"(OPENAI_BASE_URL=http://{args.host}:{port}/v1)", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    finally:
        engine.close()  # stop the Apertium pipelines
    print("[engine] stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
