"""Real recorded speech with transcripts, read from Debian packages when they are installed.

Synthetic eSpeak/Piper voices say little about real users, so `python -m babelroom.engine.eval
--real` also measures Whisper on human studio recordings that Debian ships (the audio is never
committed; `make test` installs the packages, this module installs nothing):

- `asterisk-core-sounds-{en,es,fr}-g722`: telephony prompts read by professional speakers
  (en-US and es-MX Allison Smith, fr-CA June Wallack), G.722 wideband (16 kHz), decoded by PyAV;
  their transcripts are in `asterisk-core-sounds-{en,es,fr}` as `/usr/share/doc/.../core-sounds-XX.txt.gz`,
  one `id: sentence` per line.
- `pocketsphinx-testdata`: five LibriVox read-speech clips (Sense and Sensibility) with a
  `transcription` file, 16 kHz WAV.

The subset is fixed and documented (docs/models.md): prompts of 3–25 words whose transcript has
no digits, brackets or URLs (the transcript must be what is said), then `PER_LANGUAGE` of them
evenly spaced in id order. No registry offers Portuguese sentence recordings, so pt has none.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
PER_LANGUAGE = 40
MIN_WORDS, MAX_WORDS = 3, 25
SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data/librivox")

# language -> (voice directory, transcript package, g722 package)
ASTERISK: dict[str, tuple[str, str, str]] = {
    "en": ("en_US_f_Allison", "asterisk-core-sounds-en", "asterisk-core-sounds-en-g722"),
    "es": ("es_MX_f_Allison", "asterisk-core-sounds-es", "asterisk-core-sounds-es-g722"),
    "fr": ("fr_CA_f_June", "asterisk-core-sounds-fr", "asterisk-core-sounds-fr-g722"),
}
PACKAGES = sorted({p for v in ASTERISK.values() for p in v[1:]} | {"pocketsphinx-testdata"})


@dataclass(frozen=True)
class Clip:
    language: str
    source: str  # "asterisk en_US_f_Allison", "librivox"
    id: str
    reference: str
    path: Path


# -- text normalisation for WER -----------------------------------------------------------------
_UNITS = {
    "en": "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
          "dieciseis diecisiete dieciocho diecinueve".split(),
    "fr": "zero un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
          "seize dix-sept dix-huit dix-neuf".split(),
    "it": "zero uno due tre quattro cinque sei sette otto nove dieci undici dodici tredici quattordici "
          "quindici sedici diciassette diciotto diciannove".split(),
}
_TENS = {
    "en": "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split(),
    "es": "_ _ veinte treinta cuarenta cincuenta sesenta setenta ochenta noventa".split(),
    "fr": "_ _ vingt trente quarante cinquante soixante soixante-dix quatre-vingt quatre-vingt-dix".split(),
    "it": "_ _ venti trenta quaranta cinquanta sessanta settanta ottanta novanta".split(),
}


def number_words(n: int, language: str) -> str:
    """0–99 spelled out (enough for what Whisper writes as digits in short prompts)."""
    units, tens = _UNITS.get(language), _TENS.get(language)
    if units is None or tens is None or not 0 <= n < 100:
        return str(n)
    if n < 20:
        return units[n]
    t, u = divmod(n, 10)
    if language == "fr" and t in (7, 9):
        return f"{tens[t - 1]}-{units[10 + u]}" if u else tens[t]
    if u == 0:
        return tens[t]
    if language == "en":
        return f"{tens[t]}-{units[u]}"
    if language == "es":
        return f"veinti{units[u]}" if t == 2 else f"{tens[t]} y {units[u]}"
    if language == "fr":
        return f"{tens[t]} et un" if u == 1 and t < 7 else f"{tens[t]}-{units[u]}"
    return tens[t][:-1] + units[u] if units[u][0] in "aeiou" else tens[t] + units[u]


def normalize(text: str, language: str | None = None) -> str:
    """Lower case, accents removed, digits 0–99 spelled out in `language`, punctuation
    (apostrophes and hyphens too) replaced by spaces, single spaces.

    Accents go because the es transcripts are written without them ("numero", "contrasena");
    digits are spelled because Whisper writes "press 1" where the transcript says "press one".
    """
    text = text.lower()
    if language:
        text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()), language)} ", text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def word_errors(reference: str, hypothesis: str, language: str | None = None) -> tuple[int, int]:
    """(word edits, reference words) after `normalize`: sum both over a set, then divide."""
    ref, hyp = normalize(reference, language).split(), normalize(hypothesis, language).split()
    return edit_distance(ref, hyp), len(ref)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


# -- finding the clips --------------------------------------------------------------------------
def _usable(sentence: str) -> bool:
    if re.search(r"[\d\[\]()<>{}@/#*]|www|\.org|\.com|\.\.\.", sentence):
        return False
    return MIN_WORDS <= len(normalize(sentence).split()) <= MAX_WORDS


def asterisk_clips(language: str, per_language: int = PER_LANGUAGE) -> list[Clip]:
    """The fixed subset for one language, or [] when its packages are not installed."""
    voice, text_pkg, _ = ASTERISK[language]
    doc = DOCS / text_pkg / f"core-sounds-{language}.txt.gz"
    if not doc.exists():
        return []
    candidates: list[Clip] = []
    for line in gzip.open(doc, "rt", encoding="utf-8", errors="replace"):
        line = line.strip()
        if not line or line.startswith(";") or ": " not in line:
            continue
        cid, sentence = (s.strip() for s in line.split(": ", 1))
        path = SOUNDS / voice / f"{cid}.g722"
        if _usable(sentence) and path.exists():
            candidates.append(Clip(language, f"asterisk {voice}", cid, sentence, path))
    candidates.sort(key=lambda c: c.id)
    if len(candidates) <= per_language:
        return candidates
    step = len(candidates) / per_language
    return [candidates[int(i * step)] for i in range(per_language)]


def librivox_clips() -> list[Clip]:
    """The five LibriVox clips of pocketsphinx-testdata (English read speech)."""
    f = POCKETSPHINX / "transcription"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if m and (POCKETSPHINX / f"{m.group(2)}.wav").exists():
            out.append(Clip("en", "librivox", m.group(2), m.group(1).strip(), POCKETSPHINX / f"{m.group(2)}.wav"))
    return out


def real_clips(per_language: int = PER_LANGUAGE) -> list[Clip]:
    """Every clip of the fixed subset whose package is installed (en, es, fr; LibriVox en)."""
    clips: list[Clip] = []
    for lang in ASTERISK:
        clips += asterisk_clips(lang, per_language)
    return clips + librivox_clips()


def missing_packages() -> list[str]:
    """Debian packages of the real-speech set that are not installed."""
    missing = []
    for lang, (voice, text_pkg, audio_pkg) in ASTERISK.items():
        if not (DOCS / text_pkg / f"core-sounds-{lang}.txt.gz").exists():
            missing.append(text_pkg)
        if not (SOUNDS / voice).is_dir():
            missing.append(audio_pkg)
    if not (POCKETSPHINX / "transcription").exists():
        missing.append("pocketsphinx-testdata")
    return missing


def load(clip: Clip) -> np.ndarray:
    """16 kHz mono float32 audio of a clip (G.722 through PyAV, WAV through the wave module)."""
    if clip.path.suffix == ".wav":
        from .audio import read_wav, resample

        audio, rate = read_wav(str(clip.path))
        return resample(audio, rate, RATE)
    import av

    with av.open(str(clip.path), format="g722") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    audio = np.concatenate(frames).astype(np.float32) / 32768.0
    if rate != RATE:
        from .audio import resample

        audio = resample(audio, rate, RATE)
    return audio
