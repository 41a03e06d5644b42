"""The tree azd deploys (`.funcignore` applied) is a working function app on its own: every module
in it imports in a fresh interpreter that sees only the tree and the installed packages, and the
translator's audio path runs there on a real clip (issue 10, defect 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from babelroom.bench.clips import synthesize
from babelroom.twin import deploytree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deploytree.build(tmp_path_factory.mktemp("deploy") / "wwwroot")


def fresh(tree: Path, code: str, *args: str) -> dict:
    """Run `code` in `python -I` (no PYTHONPATH, no user site, no cwd) with only `tree` prepended:
    what the Functions worker sees after the remote build installed requirements.txt."""
    prelude = "import sys, json; sys.path.insert(0, sys.argv[1]); args = sys.argv[2:]\n"
    out = subprocess.run([sys.executable, "-I", "-c", prelude + code, str(tree), *args], cwd=tree.parent,
                         env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def modules(tree: Path) -> list[str]:
    names = []
    for p in sorted(tree.rglob("*.py")):
        parts = list(p.relative_to(tree).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


IMPORT_ALL = """
import importlib, importlib.util, traceback
failed = {}
for name in args:
    try:
        mod = importlib.import_module(name)
        if not getattr(mod, "__file__", "").startswith(sys.argv[1]):
            failed[name] = f"imported from outside the tree: {mod.__file__}"
    except BaseException as e:
        failed[name] = f"{type(e).__name__}: {e}"
print(json.dumps({"failed": failed, "engine": importlib.util.find_spec("babelroom.engine") is not None}))
"""


def test_tree_applies_funcignore(tree: Path) -> None:
    kept = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert {"function_app.py", "host.json", "requirements.txt", "babelroom/pcm.py"} <= kept
    for left_out in ("babelroom/twin/host.py", "babelroom/engine/audio.py", "tests/conftest.py", "Makefile"):
        assert left_out not in kept and (ROOT / left_out).exists()
    assert not any(p.startswith((".venv/", "docs/", "infra/")) or "__pycache__" in p for p in kept)


def test_funcignore_rules_follow_gitignore_syntax() -> None:
    rules = deploytree.parse("# c\nbuild/\n/top.txt\n*.log\n!keep.log\ndocs/**/*.png\n")
    assert deploytree.ignored("build", True, rules) and not deploytree.ignored("build", False, rules)
    assert deploytree.ignored("a/build", True, rules)  # no slash inside: any depth
    assert deploytree.ignored("top.txt", False, rules) and not deploytree.ignored("a/top.txt", False, rules)
    assert deploytree.ignored("a/b/x.log", False, rules) and not deploytree.ignored("keep.log", False, rules)
    assert deploytree.ignored("docs/a/b/c.png", False, rules) and deploytree.ignored("docs/c.png", False, rules)


def test_every_module_in_the_tree_imports_alone(tree: Path) -> None:
    names = modules(tree)
    assert "function_app" in names and "babelroom.adapters.realtime" in names
    got = fresh(tree, IMPORT_ALL, *names)
    assert got["failed"] == {}
    assert not got["engine"], "babelroom.engine is excluded by .funcignore: the check must not see the repo"


AUDIO_PATH = """
from babelroom.adapters.realtime import resample_16k_to_24k
from babelroom.codec import AudioPacker, decode_opus
pcm = open(args[0], "rb").read()
pcm24 = resample_16k_to_24k(pcm)
packed = AudioPacker("opus").pack(pcm24, final=True)
decoded = decode_opus(packed["packets"])
print(json.dumps({"pcm24": len(pcm24), "packets": len(packed["packets"]), "decoded": len(decoded)}))
"""


def test_translator_audio_path_runs_in_the_tree(tree: Path, tmp_path: Path) -> None:
    """Speaker audio (16 kHz) → the Realtime API's 24 kHz → Opus packets, as functions/translate.py
    does per segment, on an eSpeak NG clip."""
    pcm = synthesize("Good morning everyone, the meeting starts now.", "espeak", "en", 160, cache=tmp_path)
    clip = tmp_path / "clip.pcm"
    clip.write_bytes(pcm)
    got = fresh(tree, AUDIO_PATH, str(clip))
    assert abs(got["pcm24"] - len(pcm) * 3 // 2) <= 4
    assert got["packets"] >= len(pcm) // 640  # one 20 ms Opus packet per 640 bytes of 16 kHz PCM16
    assert abs(got["decoded"] - got["pcm24"] * 2) <= 48_000 * 2 * 0.1  # 48 kHz out, within 100 ms
