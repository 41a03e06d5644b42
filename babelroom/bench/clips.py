"""Speech clips the bench synthesizes itself: several languages, voices and speeds, cached on disk.

Why synthetic: the benchmark must run offline on any machine and be repeatable, and its clips must
carry no one's voice. eSpeak NG gives Spanish, Portuguese and English voices with variants and
speeds; Piper's `joe` gives a natural English voice. Everything is PCM16 mono 16 kHz, the wire
format of speaker frames (docs/protocol.md §3).
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".run" / "bench" / "clips"
RATE = 16_000
BYTES_PER_SECOND = RATE * 2

# Turns a person might say in a meeting, from ~2 s to ~10 s; the long turn strings them together.
SENTENCES: dict[str, list[str]] = {
    "es": [
        "Buenos días a todos, empezamos.",
        "Hoy revisamos el plan del proyecto y las fechas de entrega.",
        "El equipo terminó la primera versión ayer, y mañana empezamos las pruebas con tres clientes.",
        "Necesito que cada uno me envíe su informe antes del viernes, porque el lunes presentamos "
        "los resultados a la dirección.",
        "Los costes de la nube bajaron un diez por ciento este mes.",
        "Si hay preguntas, las vemos al final de la reunión.",
    ],
    "pt": [
        "Bom dia a todos, vamos começar.",
        "Hoje vamos falar sobre o orçamento do próximo trimestre.",
        "A equipe de vendas fechou dois contratos novos esta semana e o cliente pediu uma demonstração.",
        "Precisamos de contratar mais duas pessoas para o suporte, porque o número de chamados "
        "dobrou desde o lançamento.",
        "O servidor novo já está funcionando desde ontem.",
        "Depois da reunião eu envio o resumo para todos.",
    ],
    "en": [
        "Good morning, everyone, let us start.",
        "Let us go through the agenda for today's meeting.",
        "The new release went out on Monday, and so far we have seen very few problems from customers.",
        "Before we finish, please send me your updates by Friday, because the board wants a short "
        "summary of the project next week.",
        "Our cloud costs went down by ten percent this month.",
        "If you have questions, we can take them at the end.",
    ],
}

# (engine, voice, words per minute or Piper length scale) per language: voices and speeds vary by clip.
VOICES: dict[str, list[tuple[str, str, float]]] = {
    "es": [("espeak", "es", 150), ("espeak", "es-419+f3", 165), ("espeak", "es+m3", 140)],
    "pt": [("espeak", "pt-br", 150), ("espeak", "pt+m3", 165), ("espeak", "pt-br+f2", 140)],
    "en": [("piper", "joe", 1.0), ("espeak", "en-us+f2", 160), ("espeak", "en-gb-scotland", 145)],
}


@dataclass(frozen=True)
class Clip:
    """One turn's speech: what a speaker holds the key for."""

    name: str
    language: str
    voice: str
    text: str
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND


def _resample(samples: np.ndarray, src_rate: int) -> bytes:
    """Linear resampling to 16 kHz: good enough for ASR input, and needs no extra dependency."""
    if src_rate == RATE:
        return samples.astype("<i2").tobytes()
    n = int(round(len(samples) * RATE / src_rate))
    x = np.linspace(0, len(samples) - 1, n)
    out = np.interp(x, np.arange(len(samples)), samples.astype(np.float64))
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


def _espeak(text: str, voice: str, wpm: float) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        raw, wav16 = Path(tmp) / "raw.wav", Path(tmp) / "16k.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(wpm)), "-w", str(raw), text], check=True,
                       capture_output=True)
        try:
            subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav16)], check=True,
                           capture_output=True)
            with wave.open(str(wav16)) as w:
                return w.readframes(w.getnframes())
        except (OSError, subprocess.CalledProcessError):  # no sox: resample ourselves
            with wave.open(str(raw)) as w:
                data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
                return _resample(data, w.getframerate())


def _piper(text: str, length_scale: float) -> bytes:
    from piper import PiperVoice, SynthesisConfig

    from babelroom.engine.models import piper_voice_paths

    onnx, cfg = piper_voice_paths()
    voice = PiperVoice.load(onnx, cfg)
    chunks = list(voice.synthesize(text, SynthesisConfig(length_scale=length_scale)))
    rate = chunks[0].sample_rate
    data = np.concatenate([np.frombuffer(c.audio_int16_bytes, "<i2") for c in chunks])
    return _resample(data, rate)


def synthesize(text: str, engine: str, voice: str, speed: float, cache: Path = CACHE) -> bytes:
    """PCM16 16 kHz of `text`, from the cache when the same text, voice and speed were made before."""
    key = hashlib.sha1(f"{engine}|{voice}|{speed}|{text}".encode()).hexdigest()[:16]
    path = cache / f"{key}.pcm"
    if path.exists():
        return path.read_bytes()
    pcm = _piper(text, speed) if engine == "piper" else _espeak(text, voice, speed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pcm)
    tmp.replace(path)
    return pcm


def _voice(language: str, i: int) -> tuple[str, str, float]:
    return VOICES[language][i % len(VOICES[language])]


def short_clips(language: str, count: int | None = None, cache: Path = CACHE) -> list[Clip]:
    """2–10 s turns: one sentence each, voices and speeds rotating."""
    out: list[Clip] = []
    for i, text in enumerate(SENTENCES[language][:count]):
        engine, voice, speed = _voice(language, i)
        pcm = synthesize(text, engine, voice, speed, cache)
        pcm = _fit(pcm, 2.0, 10.0)
        out.append(Clip(f"{language}-{i}", language, f"{engine}:{voice}@{speed:g}", text, pcm))
    return out


def long_clip(language: str, seconds: float = 30.0, cache: Path = CACHE) -> Clip:
    """One ~30 s turn of several sentences with short pauses, as someone explaining something."""
    pause = b"\0\0" * int(0.25 * RATE)
    parts: list[bytes] = []
    texts: list[str] = []
    i = 0
    engine, voice, speed = _voice(language, 1)
    while sum(map(len, parts)) < seconds * BYTES_PER_SECOND:
        text = SENTENCES[language][i % len(SENTENCES[language])]
        parts += [synthesize(text, engine, voice, speed, cache), pause]
        texts.append(text)
        i += 1
    pcm = b"".join(parts)[: int(seconds * BYTES_PER_SECOND) // 2 * 2]
    return Clip(f"{language}-long", language, f"{engine}:{voice}@{speed:g}", " ".join(texts), pcm)


def _fit(pcm: bytes, low: float, high: float) -> bytes:
    """Pad with trailing silence to `low` seconds, cut at `high`: the issue's 2–10 s turns."""
    lo, hi = int(low * BYTES_PER_SECOND), int(high * BYTES_PER_SECOND)
    if len(pcm) < lo:
        pcm += b"\0" * (lo - len(pcm))
    return pcm[:hi]


_TAKES = np.random.default_rng(20261206)


def new_take(pcm: bytes) -> bytes:
    """One play of a clip as a new take: ±1 LSB of noise (about −90 dBFS, inaudible), so no two
    plays are the same bytes. A person never says the same samples twice; without this the
    engine's recognition cache would serve every repeated play for free and flatter the bench."""
    a = np.frombuffer(pcm, "<i2").astype(np.int32) + _TAKES.integers(-1, 2, len(pcm) // 2)
    return np.clip(a, -32768, 32767).astype("<i2").tobytes()


def frames(pcm: bytes, frame_bytes: int = 6_400) -> list[bytes]:
    """200 ms frames (the last one may be shorter), as the capture worklet produces them."""
    return [pcm[i:i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]
