"""Speech recognition: Whisper base (CTranslate2 int8) on a fast path.

faster-whisper's `transcribe()` encodes the audio twice when it detects the language and
re-decodes at higher temperatures on doubtful output; segments here are ≤ 30 s, so one encode,
one language detection on the same encoder output and one greedy decode without timestamps
is enough. The encoder also runs on a window sized to the clip (at least `min_window_s`)
instead of a zero-padded 30 s: CTranslate2 accepts shorter mel input and a 3 s segment then
encodes ≈ 5× faster (whisper.cpp calls this audio_ctx); `min_window_s=30` restores the classic
behaviour. No-speech probability and average log-probability reject the hallucinations the VAD
gate lets through.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

RATE = 16_000
MAX_SECONDS = 30


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    no_speech_prob: float
    avg_logprob: float

    @property
    def empty(self) -> bool:
        return not self.text


EMPTY = Transcript("", "", 0.0, 1.0, 0.0)


class WhisperASR:
    """Whisper base multilingual, loaded once; `transcribe` is safe to call from worker threads."""

    def __init__(
        self,
        model_dir: str,
        cpu_threads: int = 2,
        max_new_tokens: int = 128,
        no_speech_threshold: float = 0.5,
        logprob_threshold: float = -1.0,
        min_window_s: float = 10.0,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        self._Tokenizer = Tokenizer
        self._suppressed = get_suppressed_tokens
        self.languages = set(self.model.supported_languages)
        self.max_new_tokens = max_new_tokens
        self.no_speech_threshold = no_speech_threshold
        self.logprob_threshold = logprob_threshold
        self.min_window_s = min_window_s
        self.runs = 0  # how many times Whisper actually ran (the cache test reads it)
        self._lock = threading.Lock()

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        """Transcribe ≤ 30 s of 16 kHz float audio; longer audio is cut into 30 s windows."""
        with self._lock:
            self.runs += 1
        if language and language not in self.languages:
            language = None
        window = RATE * (MAX_SECONDS - 1)
        if audio.size > window:
            parts = [self._window(audio[i : i + window], language) for i in range(0, audio.size, window)]
            kept = [p for p in parts if not p.empty]
            if not kept:
                return EMPTY
            return Transcript(
                " ".join(p.text for p in kept), kept[0].language, kept[0].language_probability,
                min(p.no_speech_prob for p in kept), float(np.mean([p.avg_logprob for p in kept])),
            )
        return self._window(audio, language)

    def _token_cap(self, seconds: float, prompt_len: int) -> int:
        """`max_new_tokens` bounds a runaway decode of a short segment; a long window (CLI
        files) may legitimately need more (≈ 8 tokens a second of fast speech)."""
        return min(max(self.max_new_tokens, int(seconds * 8)), 448 - prompt_len - 1)

    def _window(self, audio: np.ndarray, language: str | None) -> Transcript:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_compression_ratio as compression_ratio

        m = self.model
        # Whisper drops the first words of audio that starts abruptly; a little silence fixes it.
        pad = np.zeros(RATE // 5, dtype=np.float32)
        features = m.feature_extractor(np.concatenate([pad, audio, pad]))
        frames = features.shape[-1]
        window = int(min(3000, max(frames + 100, self.min_window_s * 100)))
        encoder_output = m.encode(pad_or_trim(features, window + window % 2))
        language_probability = 1.0
        if language is None:
            token, language_probability = m.model.detect_language(encoder_output)[0][0]
            language = token[2:-2]
        tokenizer = self._Tokenizer(m.hf_tokenizer, True, task="transcribe", language=language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = m.model.generate(
            encoder_output,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + self._token_cap(audio.size / RATE, len(prompt)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppressed(tokenizer, [-1]),
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = tokenizer.decode(tokens).strip()
        no_speech = result.no_speech_prob
        # Whisper's own rule: silent if no-speech is likely AND the decode is unsure; plus a
        # very-low-confidence cut and the repetition (compression ratio) check.
        if (
            (no_speech > self.no_speech_threshold and avg_logprob < self.logprob_threshold)
            or avg_logprob < self.logprob_threshold - 1.0
            # "la la la" / "AHHHH" loops (ratio > 8 even when confident); a confident, merely
            # repetitive speaker (ratio 2.4-8) is kept
            or (len(text) > 20 and (ratio := compression_ratio(text)) > 2.4 and (avg_logprob < -0.5 or ratio > 8))
        ):
            text = ""
        return Transcript(text, language, float(language_probability), float(no_speech), float(avg_logprob))
