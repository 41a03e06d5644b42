"""Evaluation over speech the project synthesizes itself: WER per language and voice, chrF per
pair, latency per stage; the table goes into docs/models.md between the eval markers.

    python -m babelroom.engine.eval [--no-write]

Synthetic voices (eSpeak NG variants, Piper joe) are cleaner than real speakers, so these are
upper bounds for ASR; they are meant to catch regressions and compare routes, not to advertise.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .audio import float_to_pcm16, pcm16_to_float, resample

if TYPE_CHECKING:
    from .pipeline import Engine

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
START, END = "<!-- eval:start -->", "<!-- eval:end -->"

# Fixed sentences with reference translations (same meaning across languages).
SENTENCES: dict[str, list[str]] = {
    "en": [
        "Good morning, everyone.",
        "Today we are going to talk about the new project.",
        "The meeting starts at nine o'clock.",
        "Can you hear me well?",
        "We need more time to finish the report.",
        "The train leaves from the central station.",
        "Thank you very much for your help.",
        "I would like a cup of coffee, please.",
    ],
    "es": [
        "Buenos días a todos.",
        "Hoy vamos a hablar del nuevo proyecto.",
        "La reunión empieza a las nueve.",
        "¿Me oyes bien?",
        "Necesitamos más tiempo para terminar el informe.",
        "El tren sale de la estación central.",
        "Muchas gracias por tu ayuda.",
        "Quisiera una taza de café, por favor.",
    ],
    "pt": [
        "Bom dia a todos.",
        "Hoje vamos falar sobre o novo projeto.",
        "A reunião começa às nove horas.",
        "Você me ouve bem?",
        "Precisamos de mais tempo para terminar o relatório.",
        "O trem sai da estação central.",
        "Muito obrigado pela sua ajuda.",
        "Eu gostaria de uma xícara de café, por favor.",
    ],
}
# language -> voices used to speak it ("piper" = Piper joe, else an eSpeak NG voice name)
VOICES: dict[str, list[str]] = {
    "en": ["piper", "en-us", "en"],  # eSpeak NG "en" is British English
    "es": ["es", "es-419"],
    "pt": ["pt", "pt-br"],
}
PAIRS = [("es", "en"), ("en", "es"), ("en", "pt"), ("pt", "en"), ("es", "pt"), ("pt", "es")]


# -- clips ---------------------------------------------------------------------------------------
def synth(engine: Engine, text: str, voice: str, rate: int = 24_000, pad_s: float = 0.3) -> bytes:
    """PCM16 mono at `rate` of `voice` saying `text`, with silence around it (like a segment)."""
    if voice == "piper":
        assert engine.tts.piper is not None
        audio, src_rate = engine.tts.piper.synthesize(text), engine.tts.piper.rate
    else:
        audio, src_rate = engine.tts.espeak.synthesize(text, voice, voice=voice), engine.tts.espeak.rate
    audio = resample(audio, src_rate, rate)
    pad = np.zeros(int(rate * pad_s), dtype=np.float32)
    return float_to_pcm16(np.concatenate([pad, audio, pad]))


def silence(seconds: float, rate: int = 24_000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def white_noise(seconds: float, rate: int = 24_000, level: float = 0.1, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    return float_to_pcm16((rng.standard_normal(int(seconds * rate)) * level).astype(np.float32))


# -- metrics -------------------------------------------------------------------------------------
def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces (for WER)."""
    text = unicodedata.normalize("NFC", text.lower())
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words): sum both over a set, then divide."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def _char_ngrams(text: str, n: int) -> Counter[str]:
    s = " ".join(text.split())
    return Counter(s[i : i + n] for i in range(len(s) - n + 1))


def chrf(references: list[str], hypotheses: list[str], max_n: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF (Popović 2015): character n-gram F-score, n = 1..6, recall weighted by β = 2.

    Statistics are summed over the corpus per order, precision and recall averaged over orders;
    spaces are removed before counting, as sacrebleu's default chrF does.
    """
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        match = hyp_total = ref_total = 0
        for ref, hyp in zip(references, hypotheses, strict=True):
            r = _char_ngrams(ref.replace(" ", ""), n)
            h = _char_ngrams(hyp.replace(" ", ""), n)
            match += sum((r & h).values())
            hyp_total += sum(h.values())
            ref_total += sum(r.values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    if not precisions:
        return 0.0
    p, r = statistics.mean(precisions), statistics.mean(recalls)
    if p + r == 0:
        return 0.0
    b2 = beta * beta
    return 100 * (1 + b2) * p * r / (b2 * p + r)


# -- the run -------------------------------------------------------------------------------------
def evaluate(engine: Engine, log: bool = True) -> str:
    """Run everything and return the markdown block."""
    from .mt import split_sentences

    rows_asr: list[str] = []
    stage: dict[str, list[float]] = {"vad": [], "asr": [], "mt": [], "tts_first": [], "first_audio": []}
    transcripts: dict[str, list[str]] = {}
    for lang, voices in VOICES.items():
        for voice in voices:
            edits = words = 0
            hyps = []
            for text in SENTENCES[lang]:
                pcm = synth(engine, text, voice, rate=16_000)
                rec = engine.recognize_sync(pcm16_to_float(pcm), lang)
                stage["vad"].append(rec.timings["vad"])
                stage["asr"].append(rec.timings["asr"])
                e, w = wer(text, rec.transcript.text)
                edits, words = edits + e, words + w
                hyps.append(rec.transcript.text)
            transcripts.setdefault(lang, hyps)
            name = "Piper joe" if voice == "piper" else f"eSpeak NG {voice}"
            rows_asr.append(f"| {lang} | {name} | {len(SENTENCES[lang])} | {100 * edits / max(words, 1):.1f} % |")
            if log:
                print(f"[eval] WER {lang} {name}: {100 * edits / max(words, 1):.1f} %", file=sys.stderr)

    rows_mt: list[str] = []
    for src, tgt in PAIRS:
        route = engine.mt.route(src, tgt)
        if route is None:
            continue
        text_out, speech_out = [], []
        for i, text in enumerate(SENTENCES[src]):
            t = time.perf_counter()
            text_out.append(engine.translate_sync(text, src, tgt).text)
            stage["mt"].append(time.perf_counter() - t)
            speech_out.append(engine.translate_sync(transcripts[src][i], src, tgt).text)
        c_text = chrf(SENTENCES[tgt], text_out)
        c_speech = chrf(SENTENCES[tgt], speech_out)
        rows_mt.append(f"| {src}→{tgt} | {route.describe()} | {c_text:.1f} | {c_speech:.1f} |")
        if log:
            print(f"[eval] chrF {src}→{tgt}: text {c_text:.1f}, from speech {c_speech:.1f}", file=sys.stderr)

    # end of segment → first translated audio, for ≈ 3 s segments (es→en, pt→en, en→pt)
    for src, tgt, voice in (("es", "en", "es"), ("pt", "en", "pt-br"), ("en", "pt", "piper"), ("en", "es", "en-us")):
        for text in SENTENCES[src][1:5]:
            pcm = synth(engine, text, voice, rate=16_000)
            audio = pcm16_to_float(pcm)
            t0 = time.perf_counter()
            rec = engine.recognize_sync(audio, src)
            translation = engine.translate_sync(rec.transcript.text, src, tgt)
            first = split_sentences(translation.text)[0] if translation.text else ""
            t = time.perf_counter()
            if first:
                engine.speak_sync(first, tgt)
            stage["tts_first"].append(time.perf_counter() - t)
            stage["first_audio"].append(time.perf_counter() - t0)

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.0f} ms" if xs else "–"

    def p90(xs: list[float]) -> str:
        return f"{np.percentile(xs, 90) * 1000:.0f} ms" if xs else "–"

    lat = [
        f"| VAD (Silero) | {med(stage['vad'])} | {p90(stage['vad'])} |",
        f"| ASR (Whisper base int8, 2 threads) | {med(stage['asr'])} | {p90(stage['asr'])} |",
        f"| MT (per sentence, best route) | {med(stage['mt'])} | {p90(stage['mt'])} |",
        f"| TTS first sentence | {med(stage['tts_first'])} | {p90(stage['tts_first'])} |",
        f"| end of segment → first translated audio | {med(stage['first_audio'])} | {p90(stage['first_audio'])} |",
    ]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join([
        START,
        f"_Generated by `python -m babelroom.engine.eval` on {when}; 2 CPU cores, synthetic speech "
        f"(~2–4 s clips, 0.3 s silence each side)._",
        "",
        "**ASR word error rate** (source language given, as the translator does)",
        "",
        "| language | voice | clips | WER |",
        "|---|---|---|---|",
        *rows_asr,
        "",
        "**Translation chrF** (β = 2, 0–100) on the reference sentences (text) and on the ASR output"
        " of the first voice (from speech)",
        "",
        "| pair | route | chrF text | chrF from speech |",
        "|---|---|---|---|",
        *rows_mt,
        "",
        "**Latency per stage** (median, p90)",
        "",
        "| stage | median | p90 |",
        "|---|---|---|",
        *lat,
        END,
    ])


def write(block: str, doc: Path = DOC) -> None:
    text = doc.read_text() if doc.exists() else f"# Models\n\n{START}\n{END}\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babelroom.engine.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/models.md alone")
    parser.add_argument("--asr-window", type=float, default=None,
                        help="minimum Whisper encoder window in seconds (default: the engine's)")
    args = parser.parse_args(argv)
    from .pipeline import Engine, EngineConfig

    engine = Engine.shared(EngineConfig(asr_window_s=args.asr_window) if args.asr_window else None)
    block = evaluate(engine)
    print(block)
    if not args.no_write:
        write(block)
        print(f"[eval] wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
