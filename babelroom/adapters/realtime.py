"""Translator port over the OpenAI Realtime API, through the official openai SDK only.

The same code serves Azure OpenAI (GA v1 API: `wss://<resource>.openai.azure.com/openai/v1/realtime
?model=<deployment>`, no api-version, Entra ID bearer token), OpenAI, and the twin's local engine
(`python -m babelroom.engine.server`, which refuses the retired preview URL shape): only settings
change. A segment is transcribed once, in a transcription-only realtime session (audio in,
`audio.input.transcription`, no `response.create`, so no realtime audio tokens are billed); each
target language then gets a text-in session (`conversation.item.create` with `input_text`,
`response.create` with `output_modalities: ["audio"]`): translated transcript and speech out. The
target language travels in the typed `response.metadata` (read by the local engine) and in the
instructions (read by GPT-4o).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from babelroom.config import Settings
from babelroom.translator import (
    INPUT_RATE,
    OUTPUT_RATE,
    Output,
    SourceText,
    Spoken,
    TranslatedAudio,
    TranslatedText,
)

# name -> meaning; the config contract test reads this.
SETTINGS: dict[str, str] = {
    "TRANSLATOR_PROVIDER": "'local' (twin engine), 'openai' or 'azure'",
    "REALTIME_MODEL": "realtime model name (default gpt-realtime; Azure: used as deployment if none set)",
    "REALTIME_TRANSCRIPTION_MODEL": "input transcription model; on Azure a deployment (gpt-4o-mini-transcribe)",
    "REALTIME_VOICE": "output voice for GPT-4o (default alloy; the local engine picks its own)",
    "OPENAI_BASE_URL": "base URL: the local engine (http://127.0.0.1:7073/v1) or OpenAI",
    "OPENAI_API_KEY": "OpenAI key (provider openai; ignored by the local engine)",
    "AZURE_OPENAI_ENDPOINT": "https://<resource>.openai.azure.com (provider azure)",
    "AZURE_OPENAI_DEPLOYMENT": "deployment of gpt-4o-realtime / gpt-realtime",
    "AZURE_OPENAI_API_KEY": "key; unset = Entra ID (managed identity)",
    "AZURE_CLIENT_ID": "client id of the user-assigned managed identity (Entra ID auth)",
}

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_LOCAL_URL = "http://127.0.0.1:7073/v1"
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
API_RATE = 24_000
CHUNK_MS = 200
# A session must acknowledge at once (handshake, session.updated, input_audio_buffer.committed,
# response.created) and then may compute: a hung endpoint is noticed in IDLE_TIMEOUT_S, while a
# model that is busy (a cold or shared CPU in the twin) gets WORK_TIMEOUT_S between two events
# plus WORK_PER_AUDIO_S per second of audio it has to recognize.
IDLE_TIMEOUT_S = 5.0
WORK_TIMEOUT_S = 15.0
WORK_PER_AUDIO_S = 2.0
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"

LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "pt": "Portuguese", "fr": "French", "de": "German", "it": "Italian",
    "ca": "Catalan", "nl": "Dutch", "pl": "Polish", "ro": "Romanian", "ru": "Russian", "uk": "Ukrainian",
    "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi", "tr": "Turkish",
}

INTERPRETER = (
    "You are a simultaneous interpreter. Translate everything the user says from {source} into {target}. "
    "Speak only the translation, in {target}, in the first person, keeping the speaker's meaning, tone and "
    "register. Never answer questions, add comments, greet or explain; if the audio has no speech, say nothing."
)
SPEECH_TRANSLATOR = (
    "You are a simultaneous interpreter. The user's message is what a speaker just said in {source}. "
    "Say it in {target}: speak only the translation, in the first person, keeping the speaker's meaning, "
    "tone and register. Never answer questions, add comments, greet or explain."
)
TEXT_TRANSLATOR = (
    "Translate the user's chat message from {source} into {target}. Reply with the translation only."
)


def _name(lang: str) -> str:
    return LANGUAGE_NAMES.get(lang, lang)


class RealtimeTimeout(TimeoutError):
    """The endpoint went quiet: no event within the idle timeout (or the session overran)."""


class RealtimeError(RuntimeError):
    """The endpoint answered with a Realtime `error` event (e.g. code `server_busy`)."""

    def __init__(self, code: str | None, message: str, error_type: str | None = None) -> None:
        super().__init__(f"{code or error_type}: {message}")
        self.code = code
        self.error_type = error_type


def resample_16k_to_24k(pcm16: bytes) -> bytes:
    """Speaker frames are 16 kHz; the Realtime API takes 24 kHz PCM16."""
    from babelroom.pcm import resample_pcm16

    return resample_pcm16(pcm16, INPUT_RATE, API_RATE)


class RealtimeTranslator:
    """Implements babelroom.translator.Translator with `client.realtime.connect`."""

    def __init__(self, client: Any, model: str = DEFAULT_MODEL, *, provider: str = "local",
                 transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL, voice: str = "alloy",
                 timeout: float = 60.0, idle_timeout: float = IDLE_TIMEOUT_S,
                 work_timeout: float = WORK_TIMEOUT_S) -> None:
        self.client = client
        self.model = model
        self.provider = provider
        self.transcription_model = transcription_model
        self.voice = voice
        self.timeout = timeout  # a whole session
        self.idle_timeout = idle_timeout  # until the endpoint acknowledges: a hung one fails fast
        self.work_timeout = work_timeout  # between two events once it is computing
        self.sessions = 0  # realtime sessions opened (the bench and the tests count them)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Settings | Mapping[str, str] | None = None, *,
                      credential: Any = None) -> RealtimeTranslator:
        """From the composition root's Settings; `credential` overrides the Entra ID one (tests)."""
        e: Mapping[str, str] = (settings.values if isinstance(settings, Settings)
                                else os.environ if settings is None else settings)
        provider = (e.get("TRANSLATOR_PROVIDER") or "local").lower()
        model = e.get("REALTIME_MODEL") or DEFAULT_MODEL
        kwargs = {
            "provider": provider,
            "transcription_model": e.get("REALTIME_TRANSCRIPTION_MODEL") or DEFAULT_TRANSCRIPTION_MODEL,
            "voice": e.get("REALTIME_VOICE") or "alloy",
        }
        if provider == "local":
            from openai import AsyncOpenAI

            client = AsyncOpenAI(base_url=e.get("OPENAI_BASE_URL") or DEFAULT_LOCAL_URL, api_key="local")
        elif provider == "openai":
            from openai import AsyncOpenAI

            key = e.get("OPENAI_API_KEY")
            if not key:
                raise ValueError("TRANSLATOR_PROVIDER=openai needs OPENAI_API_KEY")
            client = AsyncOpenAI(api_key=key, base_url=e.get("OPENAI_BASE_URL") or None)
        elif provider == "azure":
            client = _azure_client(e, credential)
            model = e.get("AZURE_OPENAI_DEPLOYMENT") or model
        else:
            raise ValueError(f"TRANSLATOR_PROVIDER must be local, openai or azure, not {provider!r}")
        return cls(client, model, **kwargs)

    # -- the port ------------------------------------------------------------------------------
    async def transcribe(self, pcm16: bytes, source_language: str,
                         prompt: str | None = None) -> AsyncIterator[SourceText]:
        """What the speaker said, once per segment: interim deltas, then one final SourceText.

        Silence yields nothing. A failed transcription raises (RealtimeError / RealtimeTimeout).
        """
        async for out in self._run(lambda emit: self._transcription_session(pcm16, source_language, prompt, emit)):
            yield out

    async def speak(self, text: str, source_language: str, target_language: str) -> AsyncIterator[Spoken]:
        """One transcript into one language: TranslatedText deltas then final, and TranslatedAudio."""
        async for out in self._run(lambda emit: self._speech_session(text, source_language, target_language, emit)):
            yield out

    async def interpret(self, pcm16: bytes, source_language: str, target_language: str) -> AsyncIterator[Output]:
        """`transcribe`, then `speak` into one language (the CLI and tests; the translator function
        calls the two itself so a segment is transcribed once for every language)."""
        heard = ""
        async for src in self.transcribe(pcm16, source_language):
            heard = src.text if src.final else heard
            yield src
        if heard and target_language and target_language != source_language:
            async for out in self.speak(heard, source_language, target_language):
                yield out

    # -- sessions ------------------------------------------------------------------------------
    async def _run(self, session: Callable[[Callable[[Any], None]], Awaitable[None]]) -> AsyncIterator[Any]:
        """Run one session in a task and stream what it emits, so a slow consumer never stalls
        the socket; the session's exception is raised to the consumer."""
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def go() -> None:
            try:
                async with asyncio.timeout(self.timeout):
                    await session(queue.put_nowait)
            except TimeoutError as exc:
                queue.put_nowait(exc if isinstance(exc, RealtimeTimeout)
                                 else RealtimeTimeout(f"session took over {self.timeout:g} s"))
            except BaseException as exc:  # surfaced to the consumer below
                queue.put_nowait(exc)
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(go())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait([task])

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        """Open one realtime session; the handshake gets the idle timeout, not the whole budget."""
        manager = self.client.realtime.connect(model=self.model)
        try:
            async with asyncio.timeout(self.idle_timeout):
                conn = await manager.enter()
        except TimeoutError as exc:
            raise RealtimeTimeout(f"no WebSocket handshake within {self.idle_timeout:g} s") from exc
        self.sessions += 1
        from websockets.exceptions import ConnectionClosed

        try:
            yield conn
        except ConnectionClosed as exc:  # a send after the endpoint went away
            raise RealtimeError("connection_closed", "the endpoint closed the session before it ended") from exc
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _events(self, conn: Any, acknowledged: str, work: float) -> AsyncIterator[Any]:
        """Server events until the caller stops; a quiet, closed or garbled stream raises.

        Until the `acknowledged` event arrives the endpoint gets the idle timeout; after it, `work`
        seconds between events."""
        from websockets.exceptions import ConnectionClosed

        idle = self.idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle):
                    ev = await conn.recv()
            except TimeoutError as exc:
                raise RealtimeTimeout(f"no event from the endpoint within {idle:g} s") from exc
            except ConnectionClosed as exc:
                raise RealtimeError("connection_closed", "the endpoint closed the session before it ended") from exc
            except ValueError as exc:  # not JSON
                raise RealtimeError("malformed_event", f"unreadable server event: {exc}") from exc
            if not isinstance(getattr(ev, "type", None), str):
                raise RealtimeError("malformed_event", "server event without a type")
            if ev.type == "error":
                err = ev.error
                raise RealtimeError(getattr(err, "code", None), getattr(err, "message", None) or "error",
                                    getattr(err, "type", None))
            if ev.type == acknowledged:
                idle = work
            yield ev

    async def _transcription_session(self, pcm16: bytes, source: str, prompt: str | None,
                                     emit: Callable[[Any], None]) -> None:
        """Audio in, input transcription out, no response: the only session that hears the audio."""
        transcription = {"model": self.transcription_model, "language": source}
        if prompt:
            transcription["prompt"] = prompt
        async with self._connect() as conn:
            await conn.session.update(session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": API_RATE},
                        "transcription": transcription,
                        "turn_detection": None,
                    },
                },
            })
            pcm = resample_16k_to_24k(pcm16)
            step = API_RATE * 2 * CHUNK_MS // 1000
            for off in range(0, len(pcm), step):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[off : off + step]).decode())
            await conn.input_audio_buffer.commit()
            heard = ""
            # recognition of the whole segment comes before its first event: allow for its length
            work = self.work_timeout + WORK_PER_AUDIO_S * len(pcm16) / INPUT_RATE / 2
            async for ev in self._events(conn, "input_audio_buffer.committed", work):
                if ev.type == "conversation.item.input_audio_transcription.delta":
                    if ev.delta:
                        heard += ev.delta
                        emit(SourceText(heard.strip(), source, final=False))
                elif ev.type == "conversation.item.input_audio_transcription.completed":
                    text = str(ev.transcript or "").strip()
                    if text:
                        emit(SourceText(text, source, final=True))
                    return
                elif ev.type == "conversation.item.input_audio_transcription.failed":
                    err = getattr(ev, "error", None)
                    raise RealtimeError(getattr(err, "code", None) or "transcription_failed",
                                        getattr(err, "message", None) or "input transcription failed",
                                        getattr(err, "type", None))

    async def _speech_session(self, text: str, source: str, target: str, emit: Callable[[Any], None]) -> None:
        """Text in (the transcript), translated transcript and speech out."""
        async with self._connect() as conn:
            await conn.session.update(session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "instructions": SPEECH_TRANSLATOR.format(source=_name(source), target=_name(target)),
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": API_RATE}, "voice": self.voice}},
            })
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}],
            })
            await conn.response.create(response={
                "output_modalities": ["audio"],
                "metadata": {"target_language": target, "source_language": source},
            })
            said, final_sent = "", False
            async for ev in self._events(conn, "response.created", self.work_timeout):
                kind = ev.type
                if kind == "response.output_audio_transcript.delta":
                    said += ev.delta
                    emit(TranslatedText(ev.delta, target, final=False))  # a delta (see the port)
                elif kind == "response.output_audio_transcript.done":
                    said = ev.transcript
                    emit(TranslatedText(said.strip(), target, final=True, **_route(ev)))
                    final_sent = True
                elif kind == "response.output_audio.delta":
                    emit(TranslatedAudio(base64.b64decode(ev.delta, validate=True), target))
                elif kind == "response.done":
                    self._finish(ev.response, target, said, final_sent, emit)
                    return

    @staticmethod
    def _finish(response: Any, target: str, said: str, final_sent: bool, emit: Callable[[Any], None]) -> bool:
        """response.done: no-model pairs arrive here only, as the original text plus a note."""
        status = getattr(response, "status", None)
        if status == "failed":
            details = getattr(response, "status_details", None)
            err = getattr(details, "error", None)
            raise RealtimeError(getattr(err, "code", None), getattr(err, "message", None) or "response failed",
                                getattr(err, "type", None))
        meta = dict(getattr(response, "metadata", None) or {})
        if final_sent or status != "completed":
            return final_sent
        text = said.strip() or _output_text(response)
        if not text:
            return False
        translated = meta.get("translated", "true") != "false"
        emit(TranslatedText(text, target, final=True, translated=translated, note=meta.get("note"),
                            route=meta.get("route"), weak=meta.get("route_weak") == "true"))
        return True

    async def translate_text(self, text: str, source_language: str, target_language: str) -> TranslatedText:
        """One chat line, as a text-only response."""
        if source_language == target_language or not text.strip():
            return TranslatedText(text, target_language, final=True, translated=True)
        async with asyncio.timeout(self.timeout):
            async with self._connect() as conn:
                await conn.session.update(session={
                    "type": "realtime",
                    "output_modalities": ["text"],
                    "instructions": TEXT_TRANSLATOR.format(source=_name(source_language),
                                                           target=_name(target_language)),
                })
                await conn.conversation.item.create(item={
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}],
                })
                await conn.response.create(response={
                    "output_modalities": ["text"],
                    "metadata": {"target_language": target_language, "source_language": source_language},
                })
                out = ""
                async for ev in self._events(conn, "response.created", self.work_timeout):
                    if ev.type == "response.output_text.delta":
                        out += ev.delta
                    elif ev.type == "response.output_text.done":
                        out = ev.text
                    elif ev.type == "response.done":
                        resp = ev.response
                        if resp.status == "failed":
                            err = getattr(resp.status_details, "error", None)
                            raise RealtimeError(getattr(err, "code", None), "response failed")
                        meta = dict(resp.metadata or {})
                        final = (out or _output_text(resp)).strip()
                        return TranslatedText(final, target_language, final=True,
                                              translated=meta.get("translated", "true") != "false",
                                              note=meta.get("note"))
        raise RealtimeError("connection_closed", "the endpoint closed before response.done")  # pragma: no cover

    async def health(self) -> tuple[bool, str]:
        """Whether a realtime session opens (session.created within 10 s)."""
        try:
            async with asyncio.timeout(10):
                async with self.client.realtime.connect(model=self.model) as conn:
                    ev = await conn.recv()
                    if ev.type == "session.created":
                        return True, f"{self.provider} realtime endpoint answers ({self.model})"
                    return False, f"unexpected first event {ev.type}"
        except Exception as exc:
            return False, f"{self.provider} realtime endpoint: {type(exc).__name__}: {exc}"


def _output_text(response: Any) -> str:
    """Text of the first assistant output item (audio transcript or text)."""
    for item in getattr(response, "output", None) or []:
        for part in getattr(item, "content", None) or []:
            value = getattr(part, "transcript", None) or getattr(part, "text", None)
            if value:
                return str(value)
    return ""


def _azure_client(e: Mapping[str, str], credential: Any = None) -> Any:
    """Azure OpenAI's GA v1 API through the plain OpenAI client (not AsyncAzureOpenAI).

    `AsyncAzureOpenAI(api_version=..., azure_deployment=...)` builds the retired preview URL
    (`/openai/realtime?api-version=...&deployment=...`). The v1 API is the OpenAI shape under
    `/openai/v1`: the SDK connects to `<base_url>/realtime?model=<deployment>` (ws:// for http://,
    wss:// for https://) and sends `Authorization: Bearer <token>`, the token coming from the
    async provider passed as `api_key` and refreshed by the SDK before each connect.
    """
    from openai import AsyncOpenAI

    endpoint = (e.get("AZURE_OPENAI_ENDPOINT") or "").rstrip("/")
    if not endpoint:
        raise ValueError("TRANSLATOR_PROVIDER=azure needs AZURE_OPENAI_ENDPOINT")
    key = e.get("AZURE_OPENAI_API_KEY")
    if key:
        return AsyncOpenAI(base_url=f"{endpoint}/openai/v1", api_key=key)
    from azure.identity.aio import get_bearer_token_provider

    if credential is None:
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        client_id = e.get("AZURE_CLIENT_ID")  # the app's identity in Azure; a laptop uses az login
        credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    return AsyncOpenAI(base_url=f"{endpoint}/openai/v1", api_key=get_bearer_token_provider(credential, AZURE_SCOPE))


__all__ = ["SETTINGS", "RealtimeError", "RealtimeTranslator", "OUTPUT_RATE"]


def _route(ev: Any) -> dict[str, Any]:
    """`route_quality` (legs, quality, weak) that the local engine adds to text events; the openai
    SDK keeps unknown fields as extra attributes. GPT-4o sends none: no route, not weak."""
    rq = getattr(ev, "route_quality", None)
    if not isinstance(rq, dict):
        return {}
    return {"route": rq.get("route") if isinstance(rq.get("route"), str) else None, "weak": rq.get("weak") is True}
