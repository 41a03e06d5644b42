"""Translator faults (issue 11): endpoint timeout, 5xx on connect, malformed stream, crash
mid-segment. Each one, in the transcription session or in a language's session, ends as one
`notice` at the listeners it concerns, and the next segment translates normally.

The real engine serves every session; a small WebSocket proxy in front of it injects the fault
into the sessions a plan names (the engine cannot be made to hang, answer 503 or garble its own
stream on demand). Assertions are on messages and their order; the time from the fault to the
notice is measured and written to $TMPDIR/babelroom-translator-faults.json, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from babelroom.adapters.realtime import RealtimeTranslator
from babelroom.engine.eval import synth
from babelroom.interpreting import Interpreter, Speaker

pytestmark = pytest.mark.slow
ANA = Speaker("r1", "u1", "Ana", "es")
CRASH_AFTER = {"conversation.item.input_audio_transcription.delta", "response.output_audio.delta"}
REPORT = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "babelroom-translator-faults.json"


class FaultProxy:
    """Forwards realtime sessions to the engine; the n-th session gets `plan[n]` ("pass" or a fault)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.plan: list[str] = []
        self.sessions = 0
        self.faults: list[tuple[str, float]] = []  # (fault, monotonic time the session failed)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/realtime", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.plan[self.sessions] if self.sessions < len(self.plan) else "pass"
        self.sessions += 1
        if mode == "http_503":
            self.faults.append((mode, time.monotonic()))
            return web.json_response({"error": {"message": "service unavailable"}}, status=503)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        if mode == "timeout":  # accepts, then never says a word
            async for _ in ws:
                pass
            self.faults.append((mode, time.monotonic()))  # the client gave up: its timeout fired
            return ws
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{self.upstream}/v1/realtime?{request.query_string}", max_msg_size=0) as up:
            async def client_to_engine() -> None:
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        await up.send_str(msg.data)
                await up.close()

            pump = asyncio.ensure_future(client_to_engine())
            try:
                async for msg in up:
                    if msg.type != WSMsgType.TEXT:
                        break
                    kind = json.loads(msg.data).get("type")
                    if mode == "malformed" and kind not in ("session.created", "session.updated"):
                        await ws.send_str('{"type": "response.output_audio.delta", "delta": ')  # cut JSON
                        self.faults.append((mode, time.monotonic()))
                        break
                    await ws.send_str(msg.data)
                    if mode == "crash" and kind in CRASH_AFTER:
                        self.faults.append((mode, time.monotonic()))
                        break  # the endpoint dies mid-stream
            finally:
                pump.cancel()
                if mode == "crash" and request.transport is not None:
                    request.transport.abort()  # no close handshake, as when a process dies
                else:
                    await ws.close()
        return ws


class Timed:
    """Broadcaster that records each message with the time it was published."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, dict[str, Any]]] = []

    async def to_group(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((time.monotonic(), group, message))

    def of(self, language: str, segment: int | None = None) -> list[dict[str, Any]]:
        return [m for _, g, m in self.sent
                if g == f"r1.{language}" and (segment is None or m.get("segment") == segment)]

    def at(self, kind: str, language: str) -> float:
        return next(t for t, g, m in self.sent if g == f"r1.{language}" and m["type"] == kind)


@pytest.fixture
async def proxy(endpoint: str) -> Any:
    p = FaultProxy(endpoint)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(scope="module")
def clips(engine: Any) -> list[bytes]:
    out = [synth(engine, "Buenos días a todos.", "es", rate=16_000),
           synth(engine, "La reunión empieza ahora.", "es", rate=16_000)]
    engine._recognize_pcm(out[0][:16_000], 16_000, "es")  # Whisper's first run is slow: not a fault
    return out


def translator(proxy: FaultProxy) -> RealtimeTranslator:
    from openai import AsyncOpenAI

    # the endpoint acknowledges at once even on two busy cores; model work keeps its default budget
    return RealtimeTranslator(AsyncOpenAI(base_url=proxy.url + "/v1", api_key="local"), idle_timeout=3.0,
                              timeout=60.0)


def record(case: str, seconds: dict[str, float]) -> None:
    runs = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    runs[case] = {k: round(v, 3) for k, v in seconds.items()}
    REPORT.write_text(json.dumps(runs, indent=1, sort_keys=True))


FAULTS = ["timeout", "http_503", "malformed", "crash"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failing_language_session_ends_in_a_notice_and_the_next_segment_translates(
        proxy: FaultProxy, clips: list[bytes], fault: str) -> None:
    # sessions per segment: transcription, then English; the English session and its retry fail
    proxy.plan = ["pass", fault, fault]
    out = Timed()
    it = Interpreter(translator(proxy), out, codec="pcm16")  # type: ignore[arg-type]
    t0 = time.monotonic()
    usage = await it.segment(ANA, "t1", 0, clips[0], {"es", "en"})
    assert [f for f, _ in proxy.faults] == [fault, fault]
    en = out.of("en", 0)
    assert [m["type"] for m in en if m["type"] != "audio"] == ["caption", "notice"]  # interim line, then notice
    assert not en[0]["final"] and en[-1]["type"] == "notice"
    notice = en[-1]
    assert notice["code"] == "translation_failed" and notice["original"] and notice["id"] == "u1:t1:0"
    (es,) = out.of("es", 0)
    assert es["type"] == "caption" and es["final"] and es["text"] == notice["original"]
    assert set(usage.failures) == {"en"} and usage.transcriptions == 1
    record(f"language/{fault}", {"first_fault_to_notice_s": out.at("notice", "en") - proxy.faults[0][1],
                                 "last_fault_to_notice_s": out.at("notice", "en") - proxy.faults[-1][1],
                                 "segment_start_to_notice_s": out.at("notice", "en") - t0})

    usage = await it.segment(ANA, "t1", 1, clips[1], {"es", "en"})
    assert not usage.failures
    en1 = out.of("en", 1)
    finals = [m for m in en1 if m["type"] == "caption" and m["final"]]
    assert len(finals) == 1 and finals[0]["translated"] and finals[0]["text"]
    assert [m["last"] for m in en1 if m["type"] == "audio"][-1] is True
    assert not [m for m in en1 if m["type"] == "notice"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failing_transcription_reaches_every_language_as_a_notice(
        proxy: FaultProxy, clips: list[bytes], fault: str) -> None:
    proxy.plan = [fault, fault]  # the transcription session and its retry
    out = Timed()
    it = Interpreter(translator(proxy), out, codec="pcm16")  # type: ignore[arg-type]
    t0 = time.monotonic()
    await it.segment(ANA, "t1", 0, clips[0], {"es", "en"})
    for lang in ("es", "en"):
        (n,) = out.of(lang, 0)
        assert n["type"] == "notice" and n["code"] == "translation_failed"
    record(f"transcription/{fault}", {"first_fault_to_notice_s": out.at("notice", "en") - proxy.faults[0][1],
                                      "last_fault_to_notice_s": out.at("notice", "en") - proxy.faults[-1][1],
                                      "segment_start_to_notice_s": out.at("notice", "en") - t0})
    await it.segment(ANA, "t1", 1, clips[1], {"es", "en"})
    assert [m["type"] for m in out.of("es", 1)] == ["caption"]
    assert [m["final"] for m in out.of("en", 1) if m["type"] == "caption"] == [False, True]


async def test_one_failure_is_retried_and_nobody_hears_of_it(proxy: FaultProxy, clips: list[bytes]) -> None:
    proxy.plan = ["pass", "crash"]  # the English session dies after its first audio; the retry works
    out = Timed()
    it = Interpreter(translator(proxy), out, codec="pcm16")  # type: ignore[arg-type]
    usage = await it.segment(ANA, "t1", 0, clips[0], {"es", "en"})
    assert not usage.failures and proxy.faults and usage.sessions == 3
    en = out.of("en", 0)
    assert not [m for m in en if m["type"] == "notice"]
    audio = [m for m in en if m["type"] == "audio"]
    assert [a["seq"] for a in audio] == list(range(len(audio))) and audio[-1]["last"]

