"""Speech recognition: Whisper base (CTranslate2, int8 or float32 by CPU, see `compute_type`) on a fast path.

faster-whisper's `transcribe()` encodes the audio twice when it detects the language; segments
here are ≤ 30 s, so one encode, one language detection on the same encoder output and one
decode without timestamps is enough. The encoder also runs on a window sized to the clip (at
least `min_window_s`) instead of a zero-padded 30 s: CTranslate2 accepts shorter mel input and
a 3 s segment then encodes ≈ 5× faster (whisper.cpp calls this audio_ctx); `min_window_s=30`
restores the classic behaviour.

Decoding follows Whisper's recipe where it pays on real speech (docs/models.md, real-speech
eval): beam search, an initial prompt (the room's names and recent context) and, when a decode
looks wrong (too repetitive or too unsure), a fallback at higher temperature with a fixed seed.
What is finally returned passes `hallucination()`: output-only checks (token loops, compression
ratio, no-speech probability with confidence) that depend on nothing but the decode itself, so
the same audio always gets the same verdict.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

RATE = 16_000
MAX_SECONDS = 30
PROMPT_TOKENS = 120  # Whisper allows 223; a short tail of context is what helps


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    no_speech_prob: float
    avg_logprob: float
    dropped: str | None = None  # why a decode was discarded as a hallucination (diagnostics)

    @property
    def empty(self) -> bool:
        return not self.text


EMPTY = Transcript("", "", 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class DecodeOptions:
    """Whisper decoding settings (defaults measured on the real-speech eval, docs/models.md)."""

    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6)  # fallback; > 0 samples with a fixed seed
    best_of: int = 2  # samples per fallback temperature
    # Whisper's own pair is (0.6, -1.0); white noise scores 0.43-0.64 and real prompts that
    # decode this unsurely never score above 0.4 (eval), so 0.4 has room on both sides
    no_speech_threshold: float = 0.4
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


def looping(tokens: list[int], min_repeats: int = 4, max_period: int = 8) -> bool:
    """True when the decode ends in one unit of 1–`max_period` tokens repeated at least
    `min_repeats` times and covering at least half of the output ("1.0.1.1.1.1…", "bbbb…")."""
    n = len(tokens)
    for period in range(1, max_period + 1):
        unit = tokens[n - period :]
        if len(unit) < period:
            break
        repeats, i = 1, n - 2 * period
        while i >= 0 and tokens[i : i + period] == unit:
            repeats, i = repeats + 1, i - period
        if repeats >= min_repeats and repeats * period * 2 >= n:
            return True
    return False


def hallucination(text: str, tokens: list[int], avg_logprob: float, no_speech_prob: float, hit_cap: bool,
                  opts: DecodeOptions) -> str | None:
    """Why this decode must not be shown (None = keep it). Output-only, deterministic."""
    from faster_whisper.transcribe import get_compression_ratio

    if not text:
        return None
    if hit_cap:
        return "token cap reached (runaway decode)"
    if looping(tokens):
        return "repeating token loop"
    if len(text) > 20 and get_compression_ratio(text) > opts.compression_ratio_threshold:
        return "compression ratio"
    if no_speech_prob > opts.no_speech_threshold and avg_logprob < opts.logprob_threshold:
        return "no speech and unsure"
    if avg_logprob < opts.logprob_threshold - 1.0:
        return "very low confidence"
    return None


FAST = DecodeOptions(beam_size=1, temperatures=(0.0,))  # greedy, no fallback: what a busy engine uses


def compute_type(cpu_flags: str | None = None) -> str:
    """int8 where the CPU has 8-bit dot-product instructions (VNNI, AMX), else float32.

    Measured on a 2-core AMD EPYC with AVX2 only (CTranslate2 4.x picks oneDNN there): the 10 s
    encoder window took 0.57 s in int8 against 0.32 s in float32 (docs/models.md); int8 is the
    faster one only where VNNI makes 8-bit products cheap (and MKL serves Intel CPUs)."""
    if cpu_flags is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpu_flags = next((line for line in f if line.startswith("flags")), "")
        except OSError:
            cpu_flags = ""
    flags = set(cpu_flags.split())
    return "int8" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else "float32"


class WhisperASR:
    """Whisper base multilingual, loaded once; `transcribe` is safe to call from worker threads."""

    def __init__(
        self,
        model_dir: str,
        cpu_threads: int = 2,
        max_new_tokens: int = 128,
        min_window_s: float = 10.0,
        options: DecodeOptions | None = None,
        compute: str | None = None,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.compute_type = compute or compute_type()
        self.model = WhisperModel(model_dir, device="cpu", compute_type=self.compute_type, cpu_threads=cpu_threads)
        self._Tokenizer = Tokenizer
        self._suppressed = get_suppressed_tokens
        self.languages = set(self.model.supported_languages)
        self.max_new_tokens = max_new_tokens
        self.options = options or DecodeOptions()
        self.min_window_s = min_window_s
        self.runs = 0  # how many times Whisper actually ran (the cache test reads it)
        self.fallbacks = 0  # decodes that needed a higher temperature
        self._lock = threading.Lock()
        self._sampling = threading.Lock()  # seeded sampling decodes one at a time: reproducible

    def transcribe(self, audio: np.ndarray, language: str | None = None, prompt: str | None = None,
                   options: DecodeOptions | None = None) -> Transcript:
        """Transcribe ≤ 30 s of 16 kHz float audio; longer audio is cut into 30 s windows.

        `prompt` is previous text (names, recent captions) that biases spelling and vocabulary.
        """
        with self._lock:
            self.runs += 1
        if language and language not in self.languages:
            language = None
        opts = options or self.options
        window = RATE * (MAX_SECONDS - 1)
        if audio.size > window:
            parts = [self._window(audio[i : i + window], language, prompt, opts)
                     for i in range(0, audio.size, window)]
            kept = [p for p in parts if not p.empty]
            if not kept:
                return EMPTY
            return Transcript(
                " ".join(p.text for p in kept), kept[0].language, kept[0].language_probability,
                min(p.no_speech_prob for p in kept), float(np.mean([p.avg_logprob for p in kept])),
            )
        return self._window(audio, language, prompt, opts)

    def _token_cap(self, seconds: float, prompt_len: int) -> int:
        """`max_new_tokens` bounds a runaway decode of a short segment; a long window (CLI
        files) may legitimately need more (≈ 8 tokens a second of fast speech)."""
        return min(max(self.max_new_tokens, int(seconds * 8)), 448 - prompt_len - 1)

    def _window(self, audio: np.ndarray, language: str | None, prompt_text: str | None,
                opts: DecodeOptions) -> Transcript:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_compression_ratio

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
        prompt: list[int] = []
        if prompt_text and prompt_text.strip():
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt_text.strip())[-PROMPT_TOKENS:]]
        prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        cap = self._token_cap(audio.size / RATE, len(prompt))
        suppress = self._suppressed(tokenizer, [-1])

        def decode(temperature: float) -> tuple[str, list[int], float, float, bool]:
            kw: dict[str, object]
            if temperature == 0:
                kw = {"beam_size": opts.beam_size}
            else:
                kw = {"beam_size": 1, "num_hypotheses": opts.best_of, "sampling_topk": 0,
                      "sampling_temperature": temperature}
            result = m.model.generate(
                encoder_output, [prompt], max_length=len(prompt) + cap, return_scores=True,
                return_no_speech_prob=True, suppress_blank=True, suppress_tokens=suppress,
                repetition_penalty=1.0, no_repeat_ngram_size=0, **kw,
            )[0]
            best = max(range(len(result.sequences_ids)), key=lambda i: result.scores[i])
            tokens = result.sequences_ids[best]
            avg = result.scores[best] * len(tokens) / (len(tokens) + 1)
            text = tokenizer.decode(tokens).strip()
            return text, tokens, float(avg), float(result.no_speech_prob), len(tokens) >= cap

        attempts = []
        for i, temperature in enumerate(opts.temperatures):
            if temperature > 0:
                import ctranslate2

                with self._sampling:  # same seed, same samples: the verdict never depends on timing
                    ctranslate2.set_random_seed(1234)
                    out = decode(temperature)
                if i == 1:
                    self.fallbacks += 1
            else:
                out = decode(temperature)
            text, tokens, avg, no_speech, hit_cap = out
            attempts.append(out)
            doubtful = (hit_cap or looping(tokens) or avg < opts.logprob_threshold
                        or (len(text) > 20 and get_compression_ratio(text) > opts.compression_ratio_threshold))
            # a doubtful decode of audio that Whisper itself may think silent is not re-sampled
            # (sampling noise until something plausible comes out is how hallucinations pass)
            if not doubtful or no_speech > opts.no_speech_threshold:
                break
        # Whisper's no-speech estimate comes from the first decode step (same for every attempt);
        # the most confident attempt that passes the checks wins, else the first is dropped
        no_speech = attempts[0][3]
        verdicts = [(a, hallucination(a[0], a[1], a[2], no_speech, a[4], opts)) for a in attempts]
        kept = [a for a, reason in verdicts if reason is None]
        if kept:
            text, _, avg, _, _ = max(kept, key=lambda a: a[2])
            return Transcript(text, language, float(language_probability), no_speech, avg)
        (_, _, avg, _, _), reason = verdicts[0]
        return Transcript("", language, float(language_probability), no_speech, avg, reason)
