"""The file tree `azd deploy` ships for the function app: the repository with `.funcignore` applied.

azd zips the service folder (azure.yaml: `project: .`) leaving out what `.funcignore` matches,
with gitignore semantics as in Functions Core Tools (`func pack` / `func azure functionapp
publish`), and always leaves out `local.settings.json` (Azure/azure-dev pull request #5383,
Azure/azure-functions-core-tools issue #341). The remote build then installs requirements.txt.
The twin loads the function app from this tree, so a module the package misses is missing in the
twin too (issue 10).

`python -m babelroom.twin.deploytree DEST` builds it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALWAYS_EXCLUDED = (".git", "local.settings.json")  # VCS metadata (a file in a worktree); azd drops the other


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _glob(pattern: str) -> str:
    """gitignore glob → regex over a slash-separated relative path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out, i = out + "/.*", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body[:1] in "!^" and body else body) + "]"
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out, i = out + re.escape(pattern[i + 1]), i + 2
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def parse(text: str) -> list[Rule]:
    """gitignore syntax: `#` comments, `!` negation, trailing `/` = directories only, a `/` elsewhere
    anchors the pattern to the root, otherwise it matches a name at any depth."""
    rules = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        elif line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        rx = _glob(line)
        rules.append(Rule(re.compile(("^" if anchored else "^(?:.*/)?") + rx + "$"), negate, dir_only))
    return rules


def ignored(rel: str, is_dir: bool, rules: list[Rule]) -> bool:
    """Last matching rule wins, as in git."""
    verdict = False
    for r in rules:
        if (is_dir or not r.dir_only) and r.regex.match(rel):
            verdict = not r.negate
    return verdict


def files(root: Path = ROOT, ignore_file: str = ".funcignore") -> list[Path]:
    """Relative paths of the files the package holds (an excluded folder is not entered, as in git)."""
    spec = root / ignore_file
    rules = parse(spec.read_text()) if spec.exists() else []
    kept: list[Path] = []

    def walk(folder: Path) -> None:
        for p in sorted(folder.iterdir()):
            rel = p.relative_to(root).as_posix()
            is_dir = p.is_dir()
            if p.name in ALWAYS_EXCLUDED or ignored(rel, is_dir, rules):
                continue
            if is_dir:
                walk(p)
            else:
                kept.append(Path(rel))

    walk(root)
    return kept


def build(dest: Path, root: Path = ROOT) -> Path:
    """Copy the deployment package's files into `dest` (emptied first) and return it."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel in files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def prune_stale(folder: Path) -> None:
    """Remove `host-<pid>` trees left by host processes that were killed before their cleanup."""
    for d in folder.glob("host-*") if folder.exists() else []:
        pid = d.name.removeprefix("host-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


APP_PACKAGES = ("function_app", "functions", "durable")  # the function app's own top-level modules


def _is_app_module(name: str) -> bool:
    core = name == "babelroom" or (name.startswith("babelroom.") and not name.startswith("babelroom.twin"))
    return core or any(name == p or name.startswith(p + ".") for p in APP_PACKAGES)


def activate(tree: Path, root: Path = ROOT) -> None:
    """From now on this process imports the function app, and the core it uses, from `tree` only,
    while `babelroom.twin` (the host's own code, not deployed) keeps coming from the repository.

    The tree goes first on sys.path and the repository leaves it; `babelroom.__path__` becomes the
    tree's `babelroom/`, and `babelroom.twin` (imported already) keeps its own `__path__`. So
    `import babelroom.engine` fails here exactly as on Azure. Call it before anything imports the
    core or the function app (the twin's server imports the core: `babelroom.adapters.storage`)."""
    import babelroom
    import babelroom.twin  # noqa: F401  (pins the twin's own package to the repository)

    early = sorted(m for m in sys.modules if _is_app_module(m) and m != "babelroom")
    if early:
        raise RuntimeError(f"already imported from the repository, cannot run from the deploy tree: {early}")
    repo = os.path.realpath(root)
    sys.path[:] = [str(tree)] + [p for p in sys.path if os.path.realpath(p or os.getcwd()) != repo]
    babelroom.__path__[:] = [str(tree / "babelroom")]
    importlib.invalidate_caches()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m babelroom.twin.deploytree", description=__doc__)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    out = build(args.dest)
    print(f"{len(files())} files → {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
