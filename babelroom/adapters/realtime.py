"""Translator port over the OpenAI Realtime API, through the official openai SDK only.

The same code serves Azure OpenAI (GA v1 API: `wss://<resource>.openai.azure.com/openai/v1/realtime
?model=<deployment>`, no api-version, Entra ID bearer token), OpenAI, and the twin's local engine
(`python -m babelroom.engine.server`, which refuses the retired preview URL shape): only settings change. One
realtime session per segment and target language. The target language travels in the typed
`response.metadata` (read by the local engine) and in the instructions (read by GPT-4o).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from babelroom.config import Settings
from babelroom.translator import INPUT_RATE, OUTPUT_RATE, Output, SourceText, TranslatedAudio, TranslatedText

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
TEXT_TRANSLATOR = (
    "Translate the user's chat message from {source} into {target}. Reply with the translation only."
)


def _name(lang: str) -> str:
    return LANGUAGE_NAMES.get(lang, lang)


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
                 timeout: float = 60.0) -> None:
        self.client = client
        self.model = model
        self.provider = provider
        self.transcription_model = transcription_model
        self.voice = voice
        self.timeout = timeout

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
    async def interpret(self, pcm16: bytes, source_language: str, target_language: str) -> AsyncIterator[Output]:
        """Stream SourceText, TranslatedText and TranslatedAudio for one 16 kHz segment."""
        queue: asyncio.Queue[Output | BaseException | None] = asyncio.Queue()
        task = asyncio.ensure_future(self._interpret(pcm16, source_language, target_language, queue.put_nowait))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait([task])

    async def _interpret(self, pcm16: bytes, source: str, target: str, emit: Callable[[Any], None]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._session(pcm16, source, target, emit)
        except BaseException as exc:  # surfaced to the consumer by interpret()
            emit(exc)
        finally:
            emit(None)

    async def _session(self, pcm16: bytes, source: str, target: str, emit: Callable[[Any], None]) -> None:
        respond = bool(target) and target != source
        async with self.client.realtime.connect(model=self.model) as conn:
            await conn.session.update(session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "instructions": INTERPRETER.format(source=_name(source), target=_name(target)),
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": API_RATE},
                        "transcription": {"model": self.transcription_model, "language": source},
                        "turn_detection": None,
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": API_RATE}, "voice": self.voice},
                },
            })
            pcm = resample_16k_to_24k(pcm16)
            step = API_RATE * 2 * CHUNK_MS // 1000
            for off in range(0, len(pcm), step):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[off : off + step]).decode())
            await conn.input_audio_buffer.commit()
            if respond:
                await conn.response.create(response={
                    "output_modalities": ["audio"],
                    "metadata": {"target_language": target, "source_language": source},
                })
            transcribed = False
            responded = not respond
            heard = ""
            said = ""
            final_sent = False
            async for ev in conn:
                kind = ev.type
                if kind == "conversation.item.input_audio_transcription.delta":
                    if ev.delta:
                        heard += ev.delta
                        emit(SourceText(heard.strip(), source, final=False))
                elif kind == "conversation.item.input_audio_transcription.completed":
                    transcribed = True
                    if ev.transcript.strip():
                        emit(SourceText(ev.transcript.strip(), source, final=True))
                elif kind == "conversation.item.input_audio_transcription.failed":
                    transcribed = True
                elif kind == "response.output_audio_transcript.delta":
                    said += ev.delta
                    emit(TranslatedText(ev.delta, target, final=False))  # a delta (see the port)
                elif kind == "response.output_audio_transcript.done":
                    said = ev.transcript
                    emit(TranslatedText(said.strip(), target, final=True))
                    final_sent = True
                elif kind == "response.output_audio.delta":
                    emit(TranslatedAudio(base64.b64decode(ev.delta), target))
                elif kind == "response.done":
                    responded = True
                    final_sent = self._finish(ev.response, target, said, final_sent, emit)
                elif kind == "error":
                    raise RealtimeError(ev.error.code, ev.error.message, ev.error.type)
                if transcribed and responded:
                    break
            else:
                raise RealtimeError("connection_closed", "the endpoint closed the session before response.done")

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
        emit(TranslatedText(text, target, final=True, translated=translated, note=meta.get("note")))
        return True

    async def translate_text(self, text: str, source_language: str, target_language: str) -> TranslatedText:
        """One chat line, as a text-only response."""
        if source_language == target_language or not text.strip():
            return TranslatedText(text, target_language, final=True, translated=True)
        async with asyncio.timeout(self.timeout):
            async with self.client.realtime.connect(model=self.model) as conn:
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
                async for ev in conn:
                    if ev.type == "response.output_text.delta":
                        out += ev.delta
                    elif ev.type == "response.output_text.done":
                        out = ev.text
                    elif ev.type == "error":
                        raise RealtimeError(ev.error.code, ev.error.message, ev.error.type)
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
        raise RealtimeError("connection_closed", "the endpoint closed before response.done")

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
