"""Recognition on real human speech from Debian packages (asterisk-core-sounds, pocketsphinx
LibriVox), and the normalisation the WER figures in docs/models.md are stated with."""

from __future__ import annotations

import pytest

from babelroom.engine.corpus import missing_packages, normalize, number_words, real_clips, word_errors
from babelroom.engine.eval import REAL_WER_CEILING, real_speech
from babelroom.engine.pipeline import Engine


def test_normalisation_is_the_documented_one() -> None:
    assert normalize("Marque 21, por favor: contraseña!", "es") == "marque veintiuno por favor contrasena"
    assert normalize("Press 1 for the operator.", "en") == "press one for the operator"
    assert normalize("Composez l'indicatif 71", "fr") == "composez l indicatif soixante onze"
    assert normalize("quatre-vingt-dix", "fr") == "quatre vingt dix"
    assert word_errors("Por favor ingrese su numero", "Por favor, ingrese su número.", "es") == (0, 5)
    assert word_errors("press one", "Press 1.", "en") == (0, 2)
    assert word_errors("you are calling", "you're calling", "en") == (1, 3)  # "re" for "are": no rewriting


def test_number_words() -> None:
    assert [number_words(n, "en") for n in (0, 13, 40, 42)] == ["zero", "thirteen", "forty", "forty-two"]
    assert [number_words(n, "es") for n in (16, 22, 35)] == ["dieciseis", "veintidos", "treinta y cinco"]
    assert [number_words(n, "fr") for n in (21, 80, 97)] == ["vingt et un", "quatre-vingt", "quatre-vingt-dix-sept"]
    assert number_words(128, "en") == "128"


def test_the_subset_is_fixed_and_usable() -> None:
    if missing_packages():
        pytest.skip(f"Debian packages not installed: {' '.join(missing_packages())} (make install adds them)")
    clips = real_clips()
    assert len(clips) == 125 and [c.id for c in clips] == [c.id for c in real_clips()]
    for c in clips:
        words = normalize(c.reference, c.language).split()
        assert 3 <= len(words) <= 25 and not any(ch.isdigit() for ch in c.reference), c


@pytest.mark.slow
def test_real_speech_wer_stays_under_the_documented_ceiling(engine: Engine) -> None:
    if missing_packages():
        pytest.skip(f"real-speech packages not installed: {' '.join(missing_packages())} (make install adds them)")
    res = real_speech(engine)
    by_lang = res.by_language()
    assert res.wer() <= REAL_WER_CEILING["pooled"], (res.wer(), by_lang)
    for lang, value in by_lang.items():
        assert value <= REAL_WER_CEILING[lang], (lang, value, by_lang)
