"""Audio on the wire: Opus keeps the duration and the loudness of speech at a fraction of the bytes."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from babelroom.codec import OPUS_RATE, AudioPacker, decode_opus


def tone(seconds: float, rate: int = 24_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) * 9000).astype(np.int16).tobytes()


def test_opus_round_trip_keeps_duration_and_level_in_far_fewer_bytes() -> None:
    pcm = tone(2.0)
    packer = AudioPacker("opus")
    messages = [packer.pack(pcm[i:i + 28_800], False) for i in range(0, len(pcm), 28_800)]
    messages.append(packer.pack(b"", True))
    packets = [p for m in messages if m for p in m["packets"]]
    out = np.frombuffer(decode_opus(packets), dtype=np.int16)
    assert abs(len(out) / OPUS_RATE - 2.0) < 0.1
    rms_in = np.sqrt(np.mean(np.frombuffer(pcm, dtype=np.int16).astype(float) ** 2))
    rms_out = np.sqrt(np.mean(out.astype(float) ** 2))
    assert 0.5 < rms_out / rms_in < 1.5
    wire = sum(len(p) for p in packets)
    assert wire < len(pcm) / 8  # 24 kbit/s against 384 kbit/s


def test_pcm16_passes_through() -> None:
    packer = AudioPacker("pcm16")
    assert base64.b64decode(packer.pack(b"\x01\x00" * 10, False)["pcm"]) == b"\x01\x00" * 10
    assert packer.pack(b"", False) is None
    assert packer.pack(b"", True)["pcm"] == ""


def test_an_unknown_codec_fails_at_start() -> None:
    with pytest.raises(ValueError, match="AUDIO_CODEC"):
        AudioPacker("mp3")
