"""Shared fixtures: one loaded engine and one local endpoint for every engine test.

Speech clips are synthesized at test time with eSpeak NG (espeakng-loader, in-process) through
`babelroom.engine.eval.synth`, so tests need no audio fixtures and run real ASR on real audio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from babelroom.engine.pipeline import Engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine.shared()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def endpoint(engine: Engine) -> AsyncIterator[str]:
    """Base URL (http://127.0.0.1:PORT) of a local realtime endpoint."""
    from babelroom.engine.server import serve

    runner, port = await serve(engine, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
