"""Speech gate: Silero VAD (the ONNX file faster-whisper ships, on onnxruntime, no torch).

Whisper hallucinates on silence and noise ("Thank you.", "Subtitles by ..."), so audio with no
detected speech never reaches it. The gate also trims leading/trailing non-speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16_000


@dataclass(frozen=True)
class SpeechSpan:
    start: int  # samples at 16 kHz
    end: int


class SpeechGate:
    """Finds speech in 16 kHz float audio; `min_speech_ms` of total speech or it is rejected."""

    def __init__(self, threshold: float = 0.5, min_speech_ms: int = 250, pad_ms: int = 200) -> None:
        from faster_whisper.vad import VadOptions, get_vad_model

        from .models import silero_vad_path

        silero_vad_path()  # fail early, naming faster-whisper, if the asset is missing
        get_vad_model()  # load the ONNX session now, not on the first segment
        self.options = VadOptions(
            threshold=threshold, min_speech_duration_ms=120, min_silence_duration_ms=300, speech_pad_ms=pad_ms
        )
        self.min_speech = RATE * min_speech_ms // 1000

    def spans(self, audio: np.ndarray) -> list[SpeechSpan]:
        from faster_whisper.vad import get_speech_timestamps

        if audio.size < 512:
            return []
        return [SpeechSpan(s["start"], s["end"]) for s in get_speech_timestamps(audio, self.options, RATE)]

    def speech(self, audio: np.ndarray) -> np.ndarray | None:
        """The audio from the first to the last speech span, or None when there is too little speech."""
        spans = self.spans(audio)
        if sum(s.end - s.start for s in spans) < self.min_speech:
            return None
        return audio[spans[0].start : spans[-1].end]

    def trailing_silence(self, audio: np.ndarray) -> tuple[bool, int]:
        """(any speech, samples of non-speech after the last span): drives streaming segmentation."""
        spans = self.spans(audio)
        if not spans:
            return False, audio.size
        return True, audio.size - spans[-1].end
