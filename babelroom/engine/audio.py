"""The engine's PCM16 helpers: they live in babelroom.pcm, which the deployed function app needs too."""

from babelroom.pcm import float_to_pcm16, pcm16_to_float, read_wav, resample, resample_pcm16, wav_bytes

__all__ = ["float_to_pcm16", "pcm16_to_float", "read_wav", "resample", "resample_pcm16", "wav_bytes"]
