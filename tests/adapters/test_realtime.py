"""RealtimeTranslator against the real local engine: the same openai SDK code path the Azure host
uses, once with the local provider and once with Azure settings (the GA v1 URL
`/openai/v1/realtime?model=<deployment>`, which the engine serves; it refuses the preview shape)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from recording_env import RecordingEnv

from babelroom.adapters.realtime import SETTINGS, RealtimeError, RealtimeTranslator
from babelroom.engine.eval import silence, synth
from babelroom.engine.pipeline import Engine
from babelroom.translator import SourceText, TranslatedAudio, TranslatedText


@pytest.fixture
def base(endpoint: str) -> str:
    """The session's local realtime endpoint (tests/conftest.py), shared with the engine tests."""
    return endpoint


def local(base: str) -> RealtimeTranslator:
    return RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "local", "OPENAI_BASE_URL": base + "/v1"})


def azure(base: str) -> RealtimeTranslator:
    return RealtimeTranslator.from_settings({
        "TRANSLATOR_PROVIDER": "azure",
        "AZURE_OPENAI_ENDPOINT": base,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
        "AZURE_OPENAI_API_KEY": "test-key",
    })


async def collect(tr: RealtimeTranslator, pcm16: bytes, source: str, target: str) -> list[Any]:
    return [out async for out in tr.interpret(pcm16, source, target)]


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["local", "azure"])
async def test_interpret_streams_source_text_translation_and_audio(engine: Engine, base: str, provider: str) -> None:
    tr = local(base) if provider == "local" else azure(base)
    pcm = synth(engine, "Buenos días. La reunión empieza a las nueve.", "es", rate=16_000)
    outs = await collect(tr, pcm, "es", "en")
    sources = [o for o in outs if isinstance(o, SourceText)]
    texts = [o for o in outs if isinstance(o, TranslatedText)]
    audio = b"".join(o.pcm for o in outs if isinstance(o, TranslatedAudio))
    assert sources[-1].final and "reunión" in sources[-1].text.lower() and sources[-1].language == "es"
    final = [t for t in texts if t.final]
    assert len(final) == 1 and final[0].translated and final[0].language == "en"
    deltas = "".join(t.text for t in texts if not t.final)  # non-final texts are deltas
    assert deltas.strip() == final[0].text
    assert "meeting" in final[0].text.lower() or "good" in final[0].text.lower(), final[0].text
    assert len(audio) / 2 / 24_000 > 1.0
    # order: source text, then translated text, then audio
    kinds = [type(o).__name__ for o in outs]
    assert kinds.index("SourceText") < kinds.index("TranslatedText") < kinds.index("TranslatedAudio")


@pytest.mark.slow
async def test_same_language_yields_only_source_text(engine: Engine, base: str) -> None:
    pcm = synth(engine, "Muchas gracias por tu ayuda.", "es", rate=16_000)
    outs = await collect(local(base), pcm, "es", "es")
    assert outs and all(isinstance(o, SourceText) for o in outs)


@pytest.mark.slow
async def test_pair_without_model_yields_note_and_no_audio(engine: Engine, base: str) -> None:
    pcm = synth(engine, "El tren sale de la estación central.", "es", rate=16_000)
    outs = await collect(local(base), pcm, "es", "de")
    assert not [o for o in outs if isinstance(o, TranslatedAudio)]
    (text,) = [o for o in outs if isinstance(o, TranslatedText)]
    source = [o for o in outs if isinstance(o, SourceText) and o.final][0]
    assert text.final and not text.translated and text.note == "no translation model for es→de"
    assert text.text == source.text


@pytest.mark.slow
async def test_silence_yields_nothing(base: str) -> None:
    outs = await collect(local(base), silence(2.0, rate=16_000), "es", "en")
    assert outs == []


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["local", "azure"])
async def test_one_transcription_then_text_in_sessions_per_language(engine: Engine, base: str,
                                                                    provider: str) -> None:
    """The audio goes to one session; each language's session gets only the transcript."""
    pcm = synth(engine, "Necesitamos más tiempo para terminar el informe.", "es", rate=16_000)
    tr = local(base) if provider == "local" else azure(base)
    engine._cache.clear()  # a cached transcript would hide a second recognition
    runs = engine.asr_runs
    heard = [o for o in [o async for o in tr.transcribe(pcm, "es")] if o.final]
    assert len(heard) == 1 and "tiempo" in heard[0].text.lower()
    assert engine.asr_runs == runs + 1 and tr.sessions == 1
    spoken = {t: [o async for o in tr.speak(heard[0].text, "es", t)] for t in ("en", "pt")}
    assert engine.asr_runs == runs + 1, "a language session must not recognize the audio again"
    assert tr.sessions == 3
    for target, outs in spoken.items():
        (final,) = [o for o in outs if isinstance(o, TranslatedText) and o.final]
        assert final.translated and final.language == target and final.text
        assert sum(len(o.pcm) for o in outs if isinstance(o, TranslatedAudio)) > 24_000


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["local", "azure"])
async def test_the_prompt_reaches_whisper_as_previous_text(engine: Engine, base: str, provider: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`audio.input.transcription.prompt` travels the SDK and the engine into Whisper's decode."""
    seen: list[str | None] = []
    real = engine.asr.transcribe

    def spy(audio: Any, language: str | None = None, prompt: str | None = None, *rest: Any) -> Any:
        seen.append(prompt)
        return real(audio, language, prompt, *rest)

    monkeypatch.setattr(engine.asr, "transcribe", spy)
    pcm = synth(engine, "Zoë presenta el informe mañana.", "es", rate=16_000)
    tr = local(base) if provider == "local" else azure(base)
    engine._cache.clear()
    for prompt in ("Ana, Zoë Kowalczyk. Hablamos del informe trimestral.", None):
        finals = [o for o in [o async for o in tr.transcribe(pcm, "es", prompt)] if o.final]
        assert len(finals) == 1 and "informe" in finals[0].text.lower()
    assert seen == ["Ana, Zoë Kowalczyk. Hablamos del informe trimestral.", None]


@pytest.mark.slow
async def test_a_recognition_that_crashes_fails_the_transcription_at_once(engine: Engine, base: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine bug reaches the client as transcription.failed (server_error), not as silence
    until its timeout."""
    def broken(*args: Any) -> Any:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(engine.asr, "transcribe", broken)
    engine._cache.clear()
    pcm = synth(engine, "El informe está listo.", "es", rate=16_000)
    tr = local(base)
    with pytest.raises(RealtimeError) as failed:
        [o async for o in tr.transcribe(pcm, "es")]
    assert failed.value.code == "server_error" and "decoder exploded" in str(failed.value)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["local", "azure"])
async def test_translate_text_and_health(base: str, provider: str) -> None:
    tr = local(base) if provider == "local" else azure(base)
    out = await tr.translate_text("Good morning, how are you?", "en", "pt")
    assert out.final and out.translated and out.language == "pt" and "bom dia" in out.text.lower()
    none = await tr.translate_text("Guten Morgen", "de", "pt")
    assert not none.translated and none.note == "no translation model for de→pt" and none.text == "Guten Morgen"
    ok, detail = await tr.health()
    assert ok, detail


async def test_health_reports_an_unreachable_endpoint() -> None:
    tr = RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "local", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    ok, detail = await tr.health()
    assert not ok and "local" in detail


@pytest.mark.slow
async def test_busy_engine_surfaces_as_realtime_error(engine: Engine, base: str) -> None:
    import threading

    real = engine._jobs
    engine._jobs = threading.BoundedSemaphore(1)
    engine._jobs.acquire()
    try:
        pcm = synth(engine, "Una prueba con la cola llena.", "es", rate=16_000)
        with pytest.raises(RealtimeError) as info:
            await collect(local(base), pcm, "es", "en")
    finally:
        engine._jobs = real
    assert info.value.code == "server_busy"


@pytest.mark.parametrize("provider", ["local", "openai", "azure"])
def test_from_settings_reads_only_declared_settings(provider: str) -> None:
    env = RecordingEnv({
        "TRANSLATOR_PROVIDER": provider, "OPENAI_API_KEY": "sk-test", "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_DEPLOYMENT": "dep", "REALTIME_MODEL": "gpt-realtime",
    })
    tr = RealtimeTranslator.from_settings(env)
    assert env.read <= set(SETTINGS), env.read - set(SETTINGS)
    assert tr.provider == provider
    assert tr.model == ("dep" if provider == "azure" else "gpt-realtime")


def test_azure_without_key_uses_entra_id_token_provider() -> None:
    tr = RealtimeTranslator.from_settings({
        "TRANSLATOR_PROVIDER": "azure", "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "AZURE_OPENAI_DEPLOYMENT": "dep", "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    })
    assert callable(tr.client._api_key_provider) and not tr.client.api_key  # a token provider, no key


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="TRANSLATOR_PROVIDER"):
        RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "bogus"})
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "openai"})
    with pytest.raises(ValueError, match="AZURE_OPENAI_ENDPOINT"):
        RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "azure"})


def test_resampling_keeps_duration() -> None:
    from babelroom.adapters.realtime import resample_16k_to_24k

    pcm = (np.sin(np.arange(16_000) / 5) * 8000).astype("<i2").tobytes()
    assert len(resample_16k_to_24k(pcm)) == 24_000 * 2


async def test_endpoint_closing_early_is_an_error_not_silence() -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "session.created", "event_id": "e1", "session": {"type": "realtime"}})
        await ws.receive()  # the session.update
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with pytest.raises(RealtimeError) as info:
            await collect(local(f"http://127.0.0.1:{port}"), silence(0.5, rate=16_000), "es", "en")
        assert info.value.code == "connection_closed"
    finally:
        await runner.cleanup()


# --- the Azure OpenAI GA URL and Entra ID token (issue 10 defect 4) ------------------------------


class FakeCredential:
    """An AsyncTokenCredential that hands out numbered tokens and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **_: Any) -> Any:
        import time

        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(f"entra-token-{len(self.scopes)}", int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


@pytest.fixture
async def recorder() -> Any:
    """A WebSocket endpoint that records each upgrade request and answers `session.created`."""
    from aiohttp import web

    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "session.created", "event_id": "e1",
                            "session": {"type": "realtime", "id": "s1", "object": "realtime.session",
                                        "model": request.query.get("model")}})
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_azure_connects_to_the_ga_v1_url_with_an_entra_bearer_token(recorder: Any) -> None:
    base, seen = recorder
    cred = FakeCredential()
    tr = RealtimeTranslator.from_settings({
        "TRANSLATOR_PROVIDER": "azure", "AZURE_OPENAI_ENDPOINT": base + "/",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime", "REALTIME_TRANSCRIPTION_MODEL": "gpt-4o-mini-transcribe",
    }, credential=cred)
    ok, detail = await tr.health()
    assert ok, detail
    (req,) = seen
    assert req.path == "/openai/v1/realtime"
    assert dict(req.query) == {"model": "gpt-realtime"}  # the deployment; no api-version
    assert req.headers["Authorization"] == "Bearer entra-token-1"
    assert "api-key" not in req.headers
    assert cred.scopes == [("https://cognitiveservices.azure.com/.default",)]
    assert tr.transcription_model == "gpt-4o-mini-transcribe"


async def test_azure_https_endpoint_becomes_wss_under_openai_v1() -> None:
    """What the SDK will dial for a real resource (read from the client, nothing is connected)."""
    tr = RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "azure",
                                           "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
                                           "AZURE_OPENAI_DEPLOYMENT": "dep"}, credential=FakeCredential())
    assert str(tr.client.base_url) == "https://res.openai.azure.com/openai/v1/"
    assert tr.model == "dep"


async def test_azure_key_is_sent_as_a_bearer_on_the_same_url(recorder: Any) -> None:
    base, seen = recorder
    tr = RealtimeTranslator.from_settings({"TRANSLATOR_PROVIDER": "azure", "AZURE_OPENAI_ENDPOINT": base,
                                           "AZURE_OPENAI_DEPLOYMENT": "dep", "AZURE_OPENAI_API_KEY": "k1"})
    ok, detail = await tr.health()
    assert ok, detail
    assert seen[0].path == "/openai/v1/realtime" and dict(seen[0].query) == {"model": "dep"}
    assert seen[0].headers["Authorization"] == "Bearer k1"


async def test_the_engine_serves_the_ga_azure_url(base: str) -> None:
    ok, detail = await azure(base).health()
    assert ok, detail


async def test_the_engine_refuses_the_preview_azure_url(base: str) -> None:
    """A regression to AsyncAzureOpenAI(api_version=...) fails here, as it would on Azure GA."""
    import aiohttp
    from openai import AsyncAzureOpenAI

    preview = AsyncAzureOpenAI(azure_endpoint=base, api_version="2025-08-28", azure_deployment="gpt-realtime",
                               api_key="k", websocket_base_url=base.replace("http://", "ws://") + "/openai")
    ok, detail = await RealtimeTranslator(preview, "gpt-realtime", provider="azure").health()
    assert not ok and "400" in detail, detail
    async with aiohttp.ClientSession() as http:
        url = base + "/openai/realtime?api-version=2025-08-28&deployment=gpt-realtime"
        async with http.get(url, headers={"api-key": "k"}) as r:
            body = await r.json()
        assert r.status == 400 and "/openai/v1/realtime?model=" in body["error"]["message"]
        for query in ("?model=gpt-realtime&api-version=2025-08-28", "?deployment=gpt-realtime", ""):
            async with http.get(base + "/openai/v1/realtime" + query) as r:
                assert r.status == 400, query


async def test_the_engine_accepts_the_deployed_transcription_model(base: str) -> None:
    """Bicep deploys gpt-4o-mini-transcribe and the settings carry it (defect 5): the twin takes it."""
    tr = azure(base)
    assert tr.transcription_model == "gpt-4o-mini-transcribe"  # the default, = the Bicep deployment
    async with tr.client.realtime.connect(model=tr.model) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(session={"type": "realtime", "audio": {"input": {
            "transcription": {"model": tr.transcription_model, "language": "es"}}}})
        ev = await conn.recv()
        assert ev.type == "session.updated", ev
        assert ev.session.audio.input.transcription.model == "gpt-4o-mini-transcribe"


@pytest.mark.slow
async def test_weak_route_reaches_the_final_text_and_a_direct_one_does_not(base: str) -> None:
    """The engine flags a 3-leg pivot on its text events; the adapter carries it to the caption."""
    tr = local(base)
    weak = [o for o in [o async for o in tr.speak("Bonjour à tous.", "fr", "en")]
            if isinstance(o, TranslatedText) and o.final]
    strong = [o for o in [o async for o in tr.speak("Buenos días a todos.", "es", "en")]
              if isinstance(o, TranslatedText) and o.final]
    assert weak and all(o.weak for o in weak) and (weak[-1].route or "").count("→") >= 3
    assert strong and not any(o.weak for o in strong)
