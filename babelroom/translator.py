"""The translator port: one segment (or chat line) in, captions and voice in one language out.

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


@dataclass(frozen=True)
class TranslatedAudio:
    """A chunk of translated speech, PCM16 mono at OUTPUT_RATE."""

    pcm: bytes
    language: str


Output = SourceText | TranslatedText | TranslatedAudio


class Translator(Protocol):
    """Interprets one closed segment into one target language."""

    def interpret(
        self, pcm16: bytes, source_language: str, target_language: str
    ) -> AsyncIterator[Output]:
        """Stream outputs for one segment (PCM16 mono at INPUT_RATE).

        target == source yields only SourceText. Pairs without a model yield SourceText and a
        TranslatedText with translated=False and a note, and no audio.
        """
        ...

    async def translate_text(self, text: str, source_language: str, target_language: str) -> TranslatedText:
        """Translate one chat line."""
        ...

    async def health(self) -> tuple[bool, str]:
        """Whether the model endpoint answers, and a short detail."""
        ...
