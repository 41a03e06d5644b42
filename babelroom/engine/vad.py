"""Speech gate: Silero VAD (the ONNX file faster-whisper ships, on onnxruntime, no torch).

Whisper hallucinates on silence and noise ("Thank you.", "Subtitles by ...", "1.0.1.1…"), so
audio with too little detected speech never reaches it. "Speech" is counted in 32 ms frames
whose own speech probability reaches the threshold, not in padded spans: a burst of noise
that Silero scores just above 0.5 for three frames becomes a 0.5 s span once padded, but
stays 0.1 s of voiced frames. The gate also trims leading/trailing non-speech (keeping
`pad_ms` around the speech, which Whisper needs for first and last syllables).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16_000
FRAME = 512  # Silero's window at 16 kHz (32 ms)


@dataclass(frozen=True)
class SpeechSpan:
    start: int  # samples at 16 kHz
    end: int


class SpeechGate:
    """Finds speech in 16 kHz float audio; `min_speech_ms` of voiced frames or it is rejected."""

    def __init__(self, threshold: float = 0.5, min_speech_ms: int = 250, pad_ms: int = 200) -> None:
        from faster_whisper.vad import VadOptions, get_vad_model

        from .models import silero_vad_path

        silero_vad_path()  # fail early, naming faster-whisper, if the asset is missing
        self._model = get_vad_model()  # load the ONNX session now, not on the first segment
        self.threshold = threshold
        self.pad_ms = pad_ms
        self.options = VadOptions(
            threshold=threshold, min_speech_duration_ms=120, min_silence_duration_ms=300, speech_pad_ms=pad_ms
        )
        self.min_speech = RATE * min_speech_ms // 1000

    def spans(self, audio: np.ndarray) -> list[SpeechSpan]:
        from faster_whisper.vad import get_speech_timestamps

        if audio.size < FRAME:
            return []
        return [SpeechSpan(s["start"], s["end"]) for s in get_speech_timestamps(audio, self.options, RATE)]

    def voiced_samples(self, audio: np.ndarray) -> int:
        """Samples in frames whose speech probability reaches the threshold (no padding)."""
        if audio.size < FRAME:
            return 0
        padded = np.pad(audio.astype(np.float32, copy=False), (0, (-audio.size) % FRAME))
        probs = np.asarray(self._model(padded)).reshape(-1)
        return int((probs >= self.threshold).sum()) * FRAME

    def speech(self, audio: np.ndarray) -> np.ndarray | None:
        """The audio from the first to the last speech span, or None when there is too little speech."""
        spans = self.spans(audio)
        if not spans or self.voiced_samples(audio) < self.min_speech:
            return None
        return audio[spans[0].start : spans[-1].end]

    def trailing_silence(self, audio: np.ndarray) -> tuple[bool, int]:
        """(any speech, samples of non-speech after the last span): drives streaming segmentation."""
        spans = self.spans(audio)
        if not spans:
            return False, audio.size
        return True, audio.size - spans[-1].end
