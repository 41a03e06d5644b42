"""`python -m babelroom interpret` on a real clip (in-process, sharing the loaded engine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from babelroom.engine.audio import read_wav, wav_bytes
from babelroom.engine.cli import main
from babelroom.engine.eval import synth
from babelroom.engine.pipeline import Engine

pytestmark = pytest.mark.slow


def test_json_output(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "es.wav"
    clip.write_bytes(wav_bytes(synth(engine, "Hoy vamos a hablar del nuevo proyecto.", "es", rate=22_050), 22_050))
    out_wav = tmp_path / "en.wav"
    assert main([str(clip), "--to", "en", "--from", "es", "--out", str(out_wav), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source_language"] == "es" and "proyecto" in result["source_text"].lower()
    assert result["language"] == "en" and "project" in result["text"].lower()
    assert set(result["timings"]) >= {"vad", "asr", "mt", "tts", "total"}
    audio, rate = read_wav(str(out_wav))
    assert rate == 24_000 and audio.size > 24_000 // 2


def test_human_output_detects_language(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "en.wav"
    clip.write_bytes(wav_bytes(synth(engine, "The train leaves from the central station.", "piper"), 24_000))
    assert main([str(clip), "--to", "pt"]) == 0
    out = capsys.readouterr().out
    assert "source (en):" in out and "pt:" in out and "timings:" in out and "asr" in out


def test_espeak_cli_clip_and_module_entry(tmp_path: Path) -> None:
    """A clip made by the espeak-ng CLI, through `python -m babelroom.engine.cli` (new process)."""
    clip = tmp_path / "es.wav"
    subprocess.run(["espeak-ng", "-v", "es", "-w", str(clip), "Buenas noches a todos."], check=True)
    proc = subprocess.run([sys.executable, "-m", "babelroom.engine.cli", str(clip), "--to", "de", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["note"] == "no translation model for es→de" and result["audio_seconds"] == 0
    assert "[engine] ready" in proc.stderr
