"""`python -m babelroom interpret clip.wav --to en [--from es] [--out out.wav] [--json]`.

Lets a person try the interpreter on a file with no room, browser or Azure: prints what was
heard, the translation and how long each stage took. `argv` excludes the word "interpret".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .audio import read_wav, wav_bytes
from .models import MissingModelError

STAGES = ("vad", "asr", "mt", "tts", "total")


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """PCM16 WAV directly; anything else through PyAV (a faster-whisper dependency) at 16 kHz."""
    try:
        return read_wav(str(path))
    except Exception:
        from faster_whisper import decode_audio

        return decode_audio(str(path), sampling_rate=16_000), 16_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m babelroom interpret",
                                     description="Interpret a speech clip with the local engine.")
    parser.add_argument("clip", type=Path, help="audio file (WAV PCM16 or anything PyAV decodes)")
    parser.add_argument("--to", dest="target", required=True, help="target language, e.g. en")
    parser.add_argument("--from", dest="source", default=None, help="source language (default: detect)")
    parser.add_argument("--out", type=Path, default=None, help="write translated speech (24 kHz WAV)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not args.clip.exists():
        parser.error(f"no such file: {args.clip}")

    from .pipeline import Engine

    try:
        engine = Engine.shared()
    except MissingModelError as exc:
        print(f"babelroom engine cannot start: {exc}", file=sys.stderr)
        return 2
    audio, rate = load_audio(args.clip)
    result = engine.interpret_sync(audio, rate, args.target.lower(), (args.source or "").lower() or None)
    if args.out is not None and result.audio:
        args.out.write_bytes(wav_bytes(result.audio, 24_000))
    timings = {k: round(result.timings.get(k, 0.0), 3) for k in STAGES}
    if "first_audio" in result.timings:
        timings["first_audio"] = round(result.timings["first_audio"], 3)
    if args.json:
        print(json.dumps({
            "source_language": result.source_language,
            "source_text": result.source_text,
            "language": result.language,
            "text": result.text,
            "translated": result.translated,
            "note": result.note,
            "audio_seconds": round(len(result.audio) / 2 / 24_000, 3),
            "out": str(args.out) if args.out is not None and result.audio else None,
            "timings": timings,
        }, ensure_ascii=False))
        return 0
    if not result.source_text:
        print("no speech detected")
    else:
        print(f"source ({result.source_language}): {result.source_text}")
        print(f"{result.language}: {result.text}" + (f"   [{result.note}]" if result.note else ""))
    if args.out is not None:
        print(f"audio: {args.out} ({len(result.audio) / 48_000:.2f} s)" if result.audio else "audio: none")
    print("timings: " + "  ".join(f"{k} {v:.3f}s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
