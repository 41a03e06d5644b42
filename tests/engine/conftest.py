"""Shared fixtures: one loaded engine and one local endpoint for every engine test.

Speech clips are synthesized at test time with eSpeak NG (espeakng-loader, in-process), so
tests need no audio fixtures and exercise real ASR on real audio.
"""

from __future__ import annotations

import numpy as np
import pytest
import pytest_asyncio

from babelroom.engine.audio import float_to_pcm16, resample
from babelroom.engine.pipeline import Engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.shared()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def endpoint(engine: Engine):  # type: ignore[no-untyped-def]
    """Base URL (http://127.0.0.1:PORT) of a local realtime endpoint."""
    from babelroom.engine.server import serve

    runner, port = await serve(engine, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def speech(engine: Engine, text: str, voice: str, rate: int = 24_000, pad_s: float = 0.3) -> bytes:
    """PCM16 mono at `rate` of eSpeak NG saying `text`, with a little silence around it."""
    audio = engine.tts.espeak.synthesize(text, voice, voice=voice)
    audio = resample(audio, engine.tts.espeak.rate, rate)
    pad = np.zeros(int(rate * pad_s), dtype=np.float32)
    return float_to_pcm16(np.concatenate([pad, audio, pad]))


def silence(seconds: float, rate: int = 24_000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def white_noise(seconds: float, rate: int = 24_000, level: float = 0.1, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    return float_to_pcm16((rng.standard_normal(int(seconds * rate)) * level).astype(np.float32))
