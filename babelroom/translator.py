"""The translator port: a segment is transcribed once, then its transcript becomes captions and
voice in each target language (one text-in session per language, never a second transcription).

Adapters: `babelroom.adapters.realtime.RealtimeTranslator` (openai SDK against Azure OpenAI,
OpenAI or the twin's local engine). The translator function only sees this port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

INPUT_RATE = 16_000  # wire rate of speaker frames (docs/protocol.md)
OUTPUT_RATE = 24_000  # rate of translated audio, as the Realtime API produces it


@dataclass(frozen=True)
class SourceText:
    """What the speaker said, in their language. `final` once recognition is complete."""

    text: str
    language: str
    final: bool


@dataclass(frozen=True)
class TranslatedText:
    """Translated caption text; deltas accumulate until `final`."""

    text: str
    language: str
    final: bool
    translated: bool = True  # False: no model for the pair, `text` is the original
    note: str | None = None
    route: str | None = None  # the legs it went through, when the model says (the local engine does)
    weak: bool = False  # a route the listener should trust less (e.g. a 3-leg pivot)


@dataclass(frozen=True)
class TranslatedAudio:
    """A chunk of translated speech, PCM16 mono at OUTPUT_RATE."""

    pcm: bytes
    language: str


Spoken = TranslatedText | TranslatedAudio
Output = SourceText | TranslatedText | TranslatedAudio


class Translator(Protocol):
    """Transcribes a closed segment once, then speaks its transcript in each target language."""

    def transcribe(self, pcm16: bytes, source_language: str, prompt: str | None = None) -> AsyncIterator[SourceText]:
        """Interim SourceTexts, then one final one (PCM16 mono at INPUT_RATE). Silence: nothing.

        `prompt`: the room's names and its last lines in this language, which steer the spelling
        of names and the vocabulary of the topic (Realtime `audio.input.transcription.prompt`)."""
        ...

    def speak(self, text: str, source_language: str, target_language: str) -> AsyncIterator[Spoken]:
        """Translated text (deltas, then final) and audio for one transcript in one language.

        Pairs without a model yield one final TranslatedText with translated=False, the original
        text and a note, and no audio.
        """
        ...

    async def translate_text(self, text: str, source_language: str, target_language: str) -> TranslatedText:
        """Translate one chat line."""
        ...

    async def health(self) -> tuple[bool, str]:
        """Whether the model endpoint answers, and a short detail."""
        ...
