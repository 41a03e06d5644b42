"""PCM16 helpers shared by the engine and the realtime adapter (numpy only, no model imports).

They live in the core, not in babelroom/engine/, because the deployed function app needs them
(the realtime adapter resamples speaker audio) and .funcignore leaves babelroom/engine/ out of
the package azd deploys; babelroom.engine.audio re-exports them for the engine.

The wire carries PCM16 mono at 16 kHz (room frames) or 24 kHz (Realtime API); models want
float32 at 16 kHz (Whisper, Silero) or produce 22.05 kHz (Piper, eSpeak NG).
"""

from __future__ import annotations

import io
import wave

import numpy as np


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes to float32 in [-1, 1)."""
    if len(pcm) % 2:
        pcm = pcm[:-1]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling by windowed-sinc interpolation (good enough for speech, no scipy).

    Downsampling low-passes at the new Nyquist so 24 kHz → 16 kHz input does not alias into
    Whisper's band; upsampling interpolates with the same kernel.
    """
    if src_rate == dst_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    n_out = int(round(audio.size * dst_rate / src_rate))
    ratio = dst_rate / src_rate
    cutoff = min(1.0, ratio)  # relative to the source Nyquist
    half = 8  # taps each side, in source samples (scaled when downsampling)
    width = int(np.ceil(half / cutoff))
    t = np.arange(n_out, dtype=np.float64) / ratio  # positions in source samples
    base = np.floor(t).astype(np.int64)
    frac = t - base
    offsets = np.arange(-width + 1, width + 1)
    out = np.zeros(n_out, dtype=np.float64)
    padded = np.pad(audio.astype(np.float64), (width, width + 1))
    step = 8192  # bound memory: (step × 2·width) floats per block
    for s in range(0, n_out, step):
        e = min(n_out, s + step)
        x = offsets[None, :] - frac[s:e, None]  # distance from each tap to the exact position
        kernel = cutoff * np.sinc(cutoff * x) * (0.5 + 0.5 * np.cos(np.pi * np.clip(x / width, -1, 1)))
        idx = base[s:e, None] + offsets[None, :] + width
        out[s:e] = np.sum(padded[idx] * kernel, axis=1)
    return out.astype(np.float32)


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    if src_rate == dst_rate:
        return pcm
    return float_to_pcm16(resample(pcm16_to_float(pcm), src_rate, dst_rate))


def read_wav(data: bytes | str) -> tuple[np.ndarray, int]:
    """A PCM16 WAV (mono or the first channel) as float32 and its rate."""
    with wave.open(io.BytesIO(data) if isinstance(data, bytes) else data, "rb") as wf:
        if wf.getsampwidth() != 2:
            raise ValueError("only 16-bit PCM WAV is supported")
        frames = wf.readframes(wf.getnframes())
        rate, channels = wf.getframerate(), wf.getnchannels()
    audio = pcm16_to_float(frames)
    if channels > 1:
        audio = audio.reshape(-1, channels)[:, 0].copy()
    return audio, rate


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm)
    return buf.getvalue()
