"""The local realtime endpoint, driven by the official openai SDK (and raw aiohttp for bad input)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from babelroom.engine.eval import silence, white_noise
from babelroom.engine.eval import synth as speech
from babelroom.engine.pipeline import Engine

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

ES_TEXT = "Buenos días a todos. Hoy vamos a hablar del tiempo en la ciudad."
CHUNK = 9600  # 200 ms at 24 kHz


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


async def run_segment(base: str, pcm: bytes, target: str | None, source: str | None = "es",
                      rate: int | None = None, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One session like the translator opens: update, append in 200 ms chunks, commit, respond."""
    async with asyncio.timeout(60):  # a hung endpoint fails the test instead of blocking the suite
        return await _run_segment(base, pcm, target, source, rate, extra)


async def _run_segment(base: str, pcm: bytes, target: str | None, source: str | None,
                       rate: int | None, extra: list[dict[str, Any]] | None) -> dict[str, Any]:
    client = AsyncOpenAI(base_url=base + "/v1", api_key="x")
    seen: dict[str, Any] = {"types": [], "audio": b"", "transcript": None, "errors": [], "done": None,
                            "text": ""}
    async with asyncio.timeout(60), client.realtime.connect(model="gpt-realtime") as conn:
        session: dict[str, Any] = {
            "type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"transcription": {"model": "whisper-1", **({"language": source} if source else {})},
                                "turn_detection": None}},
        }
        if rate:
            session["audio"]["input"]["format"] = {"type": "audio/pcm", "rate": rate}
        await conn.session.update(session=session)
        step = CHUNK if not rate else rate * 2 // 5
        for off in range(0, len(pcm), step):
            await conn.input_audio_buffer.append(audio=b64(pcm[off : off + step]))
        await conn.input_audio_buffer.commit()
        for ev in extra or []:
            await conn.send(ev)  # type: ignore[arg-type]
        meta = {"target_language": target or "", **({"source_language": source} if source else {})}
        await conn.response.create(response={"metadata": meta})
        async for ev in conn:
            seen["types"].append(ev.type)
            if ev.type == "conversation.item.input_audio_transcription.completed":
                seen["transcript"] = ev.transcript
            elif ev.type == "response.output_audio.delta":
                seen["audio"] += base64.b64decode(ev.delta)
            elif ev.type == "response.output_audio_transcript.done":
                seen["text"] = ev.transcript
            elif ev.type == "error":
                seen["errors"].append(ev.error)
            elif ev.type == "response.done":
                seen["done"] = ev.response
                break
    return seen


def words_estimate_seconds(text: str) -> float:
    """Speech at ≈ 2.5 words a second."""
    return len(text.split()) / 2.5


async def test_spanish_clip_gives_transcript_and_plausible_english_audio(engine: Engine, endpoint: str) -> None:
    seen = await run_segment(endpoint, speech(engine, ES_TEXT, "es"), "en")
    transcript = seen["transcript"].lower()
    assert "buenos" in transcript and "ciudad" in transcript, transcript
    assert seen["done"].status == "completed"
    meta = seen["done"].metadata
    assert meta["translated"] == "true" and meta["target_language"] == "en"
    english = seen["text"]
    assert "good" in english.lower() or "today" in english.lower(), english
    seconds = len(seen["audio"]) / 2 / 24_000
    estimate = words_estimate_seconds(english)
    assert 0.3 * estimate <= seconds <= 3 * estimate, (seconds, estimate, english)
    # order: committed → source transcript → translated text → audio → response.done
    t = seen["types"]
    assert t.index("input_audio_buffer.committed") < t.index("conversation.item.input_audio_transcription.completed")
    assert t.index("response.output_audio_transcript.delta") < t.index("response.output_audio.delta")
    assert t[-1] == "response.done"
    assert seen["done"].usage is not None and seen["done"].usage.output_tokens > 0


async def test_16k_input_format_is_honoured(engine: Engine, endpoint: str) -> None:
    seen = await run_segment(endpoint, speech(engine, "Muchas gracias, hasta mañana.", "es", rate=16_000), "pt",
                             rate=16_000)
    assert "gracias" in seen["transcript"].lower()
    assert seen["audio"] and seen["done"].metadata["translated"] == "true"


@pytest.mark.parametrize("clip", ["silence", "noise"])
async def test_silence_and_noise_give_no_caption_and_no_audio(engine: Engine, endpoint: str, clip: str) -> None:
    pcm = silence(3.0) if clip == "silence" else white_noise(3.0)
    seen = await run_segment(endpoint, pcm, "en", source=None)
    assert seen["transcript"] == ""
    assert "conversation.item.input_audio_transcription.delta" not in seen["types"]
    assert "response.output_audio_transcript.delta" not in seen["types"]
    assert seen["audio"] == b""
    assert seen["done"].status == "completed" and seen["done"].metadata["no_speech"] == "true"
    assert not seen["errors"]


async def test_unsupported_event_gets_error_and_socket_stays_usable(engine: Engine, endpoint: str) -> None:
    seen = await run_segment(endpoint, speech(engine, "Hola, ¿qué tal?", "es"), "en",
                             extra=[{"type": "conversation.item.truncate", "item_id": "x", "content_index": 0,
                                     "audio_end_ms": 0, "event_id": "evt_1"}])
    assert len(seen["errors"]) == 1
    err = seen["errors"][0]
    assert err.type == "invalid_request_error" and err.code == "unsupported_event" and err.event_id == "evt_1"
    assert seen["done"].status == "completed" and seen["audio"]


async def test_malformed_input_is_answered_not_dropped(endpoint: str) -> None:
    ws_url = endpoint.replace("http", "ws") + "/v1/realtime?model=gpt-realtime"
    async with asyncio.timeout(60), aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        assert (await ws.receive_json())["type"] == "session.created"
        await ws.send_str("{not json")
        await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": "***"}))
        await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send_str(json.dumps({"type": "response.create", "response": {}}))
        errors = []
        while len(errors) < 4:
            ev = await ws.receive_json(timeout=10)
            if ev["type"] == "error":
                errors.append(ev["error"]["code"])
        assert errors[:3] == ["invalid_json", "invalid_value", "input_audio_buffer_commit_empty"]
        assert errors[3] == "missing_target_language"
        ev = await ws.receive_json(timeout=10)
        assert ev["type"] == "response.done" and ev["response"]["status"] == "failed"
        await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
        assert (await ws.receive_json(timeout=10))["type"] == "input_audio_buffer.cleared"


async def test_pair_without_model_carries_note_and_no_audio(engine: Engine, endpoint: str) -> None:
    seen = await run_segment(endpoint, speech(engine, "El tren sale de la estación central.", "es-419"), "de")
    meta = seen["done"].metadata
    assert meta["translated"] == "false" and meta["note"] == "no translation model for es→de"
    assert seen["audio"] == b"" and "response.output_audio.delta" not in seen["types"]
    content = seen["done"].output[0].content[0]
    assert content.transcript == seen["transcript"] and "estación" in content.transcript.lower()  # the original


async def test_second_target_language_reuses_the_recognition(engine: Engine, endpoint: str) -> None:
    pcm = speech(engine, "El tren sale a las ocho de la mañana.", "es")
    before = engine.asr_runs
    first = await run_segment(endpoint, pcm, "en")
    assert engine.asr_runs == before + 1
    second = await run_segment(endpoint, pcm, "pt")
    assert engine.asr_runs == before + 1  # cached: Whisper did not run again
    assert first["transcript"] == second["transcript"]
    assert second["audio"] and second["done"].metadata["translated"] == "true"


async def test_chat_text_translation(endpoint: str) -> None:
    client = AsyncOpenAI(base_url=endpoint + "/v1", api_key="x")
    async with asyncio.timeout(60), client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        content = [{"type": "input_text", "text": "Good morning, friends."}]
        item = {"type": "message", "role": "user", "content": content}
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        await conn.response.create(response={"output_modalities": ["text"],
                                             "metadata": {"target_language": "pt", "source_language": "en"}})
        text, types = "", []
        async for ev in conn:
            types.append(ev.type)
            if ev.type == "response.output_text.done":
                text = ev.text
            if ev.type == "response.done":
                break
    assert "bom dia" in text.lower(), text
    assert "response.output_audio.delta" not in types


async def test_full_queue_answers_rate_limited(engine: Engine, endpoint: str) -> None:
    real = engine._jobs
    engine._jobs = threading.BoundedSemaphore(1)
    engine._jobs.acquire()  # the queue is full
    try:
        seen = await run_segment(endpoint, speech(engine, "Una prueba más para la cola.", "es"), "en")
    finally:
        engine._jobs = real
    assert any(e.type == "rate_limited" and e.code == "server_busy" for e in seen["errors"])
    assert seen["done"].status == "failed"


async def test_translation_session_path(engine: Engine, endpoint: str) -> None:
    client = AsyncOpenAI(base_url=endpoint + "/v1", api_key="x")
    pcm = speech(engine, "Buenos días, bienvenidos a la reunión.", "es") + silence(1.0)
    out: dict[str, Any] = {"in": "", "out": "", "audio": b""}
    async with asyncio.timeout(60), client.realtime.translations.connect(model="gpt-realtime-translate") as t:
        assert (await t.recv()).type == "session.created"
        await t.session.update(session={"audio": {"output": {"language": "en"}}})
        for off in range(0, len(pcm), CHUNK):
            await t.session.input_audio_buffer.append(audio=b64(pcm[off : off + CHUNK]))
        await t.session.close()
        async for ev in t:
            if ev.type == "session.input_transcript.delta":
                out["in"] += ev.delta
            elif ev.type == "session.output_transcript.delta":
                out["out"] += ev.delta
            elif ev.type == "session.output_audio.delta":
                assert ev.sample_rate == 24_000
                out["audio"] += base64.b64decode(ev.delta)
            elif ev.type == "session.closed":
                break
    assert "buenos" in out["in"].lower()
    assert "good" in out["out"].lower() or "welcome" in out["out"].lower(), out["out"]
    assert len(out["audio"]) > 24_000  # > 0.5 s of speech


async def test_azure_path_and_health(endpoint: str) -> None:
    ws_url = endpoint.replace("http", "ws") + "/openai/v1/realtime?model=gpt-realtime"  # Azure GA v1 shape
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url, headers={"Authorization": "Bearer t"}) as ws:
            ev = await ws.receive_json(timeout=10)
            assert ev["type"] == "session.created" and ev["session"]["model"] == "gpt-realtime"
        async with http.get(endpoint + "/health") as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ok" and "es→en" in body["pairs"]


async def test_response_cancel(engine: Engine, endpoint: str) -> None:
    client = AsyncOpenAI(base_url=endpoint + "/v1", api_key="x")
    pcm = speech(engine, "Necesitamos más tiempo para terminar el informe.", "es-419")
    async with asyncio.timeout(60), client.realtime.connect(model="gpt-realtime") as conn:
        for off in range(0, len(pcm), CHUNK):
            await conn.input_audio_buffer.append(audio=b64(pcm[off : off + CHUNK]))
        await conn.input_audio_buffer.commit()
        await conn.response.create(response={"metadata": {"target_language": "en", "source_language": "es"}})
        await conn.response.cancel()
        async for ev in conn:
            if ev.type == "response.done":
                assert ev.response.status == "cancelled"
                break
        # the session is still usable: a new response for the same item completes
        await conn.response.create(response={"metadata": {"target_language": "pt", "source_language": "es"}})
        async for ev in conn:
            if ev.type == "response.done":
                assert ev.response.status == "completed"
                break


async def test_metadata_reports_recognition_time_and_cache(engine: Engine, endpoint: str) -> None:
    pcm = speech(engine, "La reunión empieza a las nueve de la mañana.", "es-419")
    first = await run_segment(endpoint, pcm, "en")
    second = await run_segment(endpoint, pcm, "pt")
    assert first["done"].metadata["asr_cached"] == "false" and int(first["done"].metadata["asr_ms"]) > 0
    assert second["done"].metadata["asr_cached"] == "true" and second["done"].metadata["asr_ms"] == "0"


async def test_source_language_is_detected_when_not_given(engine: Engine, endpoint: str) -> None:
    pcm = speech(engine, "Necesitamos más tiempo para terminar el informe de la semana.", "es-419")
    seen = await run_segment(endpoint, pcm, "en", source=None)
    assert seen["done"].metadata["source_language"] == "es"
    assert seen["done"].metadata["translated"] == "true" and seen["audio"]
