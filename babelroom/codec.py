"""Translated audio on the wire: Opus packets (default) or raw PCM16.

Web PubSub bills every 2 KB a receiving connection gets; 24 kHz PCM16 in base64 costs ~32 units
per second of speech per listener, Opus at 24 kbit/s about 2. Browsers decode the packets with
WebCodecs' AudioDecoder. PyAV (libopus) is imported only when Opus is used.
"""

from __future__ import annotations

import base64
from typing import Any

from .translator import OUTPUT_RATE

OPUS_RATE = 48_000  # what decoders hand back
OPUS_BITRATE = 24_000
OPUS_FRAME_MS = 20


class OpusStream:
    """One encoder per segment and language: Opus frames depend on the ones before them."""

    def __init__(self, bitrate: int = OPUS_BITRATE) -> None:
        import av

        self._av = av
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = OUTPUT_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.options = {"application": "voip", "frame_duration": str(OPUS_FRAME_MS)}
        ctx.open()
        self.ctx = ctx
        self.pts = 0

    def encode(self, pcm16: bytes, final: bool = False) -> list[bytes]:
        import numpy as np

        packets: list[bytes] = []
        samples = np.frombuffer(pcm16, dtype=np.int16)
        if samples.size:
            frame = self._av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = OUTPUT_RATE
            frame.pts = self.pts
            self.pts += samples.size
            packets += [bytes(p) for p in self.ctx.encode(frame)]
        if final:
            packets += [bytes(p) for p in self.ctx.encode(None)]
        return packets


class AudioPacker:
    """Turns a stream of PCM16 chunks into the fields of `audio` messages for one codec."""

    def __init__(self, codec: str = "opus") -> None:
        if codec not in ("opus", "pcm16"):
            raise ValueError(f"AUDIO_CODEC must be 'opus' or 'pcm16', not {codec!r}")
        self.codec = codec
        self.opus = OpusStream() if codec == "opus" else None

    def pack(self, pcm16: bytes, final: bool) -> dict[str, Any] | None:
        if self.opus is None:
            if not pcm16:
                return {"codec": "pcm16", "rate": OUTPUT_RATE, "pcm": ""} if final else None
            return {"codec": "pcm16", "rate": OUTPUT_RATE, "pcm": base64.b64encode(pcm16).decode("ascii")}
        packets = self.opus.encode(pcm16, final)
        if not packets and not final:
            return None
        return {"codec": "opus", "rate": OPUS_RATE, "frameMs": OPUS_FRAME_MS,
                "packets": [base64.b64encode(p).decode("ascii") for p in packets]}


def decode_opus(packets: list[str]) -> bytes:
    """PCM16 mono at OPUS_RATE from base64 packets (tests, the benchmark)."""
    import av
    import numpy as np

    ctx = av.CodecContext.create("libopus", "r")
    ctx.sample_rate = OPUS_RATE
    ctx.layout = "mono"
    out = []
    for p in packets:
        for frame in ctx.decode(av.Packet(base64.b64decode(p))):
            arr = frame.to_ndarray()
            if arr.dtype != np.int16:
                arr = (np.clip(arr, -1, 1) * 32767).astype(np.int16)
            out.append(arr.reshape(-1))
    return np.concatenate(out).tobytes() if out else b""
