"""Speech synthesis: Piper (en_US joe voice) for English, eSpeak NG for every other language.

Output is PCM16 mono at 24 kHz (the Realtime API's rate), one chunk per sentence so the first
sentence can play while the rest is synthesized. eSpeak NG (GPL-3.0-or-later) runs in-process
through espeakng-loader's bundled library via ctypes; it keeps global state, so every call is
serialized by one lock. Piper's phonemizer is likewise serialized by its own lock.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from .audio import float_to_pcm16, resample
from .models import MissingModelError, package_dir, piper_voice_paths

OUT_RATE = 24_000

# Language -> eSpeak NG voice, chosen by BCP-47 tag (espeak_SetVoiceByProperties), so regional
# variants such as en-gb / en-us, es / es-419, pt / pt-br are all reachable.
ESPEAK_VOICES: dict[str, str] = {
    "en": "en-us", "es": "es", "pt": "pt-br", "fr": "fr-fr", "de": "de", "it": "it", "ca": "ca",
    "nl": "nl", "pl": "pl", "ro": "ro", "ru": "ru", "uk": "uk", "sv": "sv", "da": "da",
    "nb": "nb", "fi": "fi", "cs": "cs", "el": "el", "tr": "tr", "hu": "hu", "eu": "eu", "eo": "eo",
}


class _EspeakVoice(ctypes.Structure):
    """espeak_VOICE from speak_lib.h (selection by language tag)."""

    _fields_ = [
        ("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p),
    ]


class EspeakTTS:
    """eSpeak NG through ctypes: ≈ 3 ms a sentence, robotic but intelligible."""

    def __init__(self, rate_wpm: int = 165) -> None:
        espeak_dir = package_dir("espeakng_loader", "espeakng-loader")
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_EspeakVoice)]
        sr = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # 2 = synchronous
        if sr <= 0:
            raise MissingModelError(f"espeak_Initialize failed in {espeak_dir}")
        self.rate = sr
        self.lib = lib
        self.lock = threading.Lock()
        self._buf: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )

        def on_audio(wav: Any, n: int, events: Any) -> int:
            if n > 0:
                self._buf.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = callback_type(on_audio)  # keep a reference: ctypes does not
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
        self._voice: str | None = None

    def languages(self) -> set[str]:
        return set(ESPEAK_VOICES)

    def synthesize(self, text: str, language: str, voice: str | None = None) -> np.ndarray:
        """float32 audio at `self.rate` for one sentence."""
        name = voice or ESPEAK_VOICES.get(language, language)
        data = text.encode()
        with self.lock:
            if name != self._voice:
                spec = _EspeakVoice(None, name.encode(), None, 0, 0, 0, 0, 0, None)
                if (self.lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != 0
                        and self.lib.espeak_SetVoiceByName(name.encode()) != 0):
                    raise ValueError(f"eSpeak NG has no voice {name!r}")
                self._voice = name
            self._buf = []
            self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)  # UTF-8, blocking
            buf, self._buf = self._buf, []
        if not buf:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(buf).astype(np.float32) / 32768.0


class PiperTTS:
    """Piper with the en_US joe medium voice: natural, first audio ≈ 0.1 s on 2 cores."""

    def __init__(self, threads: int = 2) -> None:
        package_dir("piper", "piper-tts")
        import onnxruntime
        from piper import PiperVoice

        onnx, cfg = piper_voice_paths()
        self.voice = PiperVoice.load(onnx, config_path=cfg)
        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.voice.session = onnxruntime.InferenceSession(
            str(onnx), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self.rate = self.voice.config.sample_rate
        self.lock = threading.Lock()

    def synthesize(self, text: str) -> np.ndarray:
        with self.lock:
            chunks = [c.audio_float_array for c in self.voice.synthesize(text)]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)


class TTS:
    """Routes a language to its voice and returns 24 kHz PCM16 per sentence."""

    def __init__(self, piper: bool = True) -> None:
        self.espeak = EspeakTTS()
        self.piper = PiperTTS() if piper else None

    def languages(self) -> set[str]:
        return self.espeak.languages() | ({"en"} if self.piper else set())

    def sentence(self, text: str, language: str, light: bool = False) -> bytes:
        """One sentence as PCM16 mono at 24 kHz; `light`: eSpeak NG even where Piper speaks
        (≈ 0.05 s of CPU a sentence instead of ≈ 0.8 s, for an engine that is falling behind)."""
        if language == "en" and self.piper is not None and not light:
            audio, rate = self.piper.synthesize(text), self.piper.rate
        else:
            audio, rate = self.espeak.synthesize(text, language), self.espeak.rate
        return float_to_pcm16(resample(audio, rate, OUT_RATE))

    def stream(self, sentences: list[str], language: str) -> Iterator[bytes]:
        for s in sentences:
            pcm = self.sentence(s, language)
            if pcm:
                yield pcm
