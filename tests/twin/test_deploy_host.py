"""The twin host process runs the function app from the deployment tree (`.funcignore` applied), so
a module the package misses is missing in the twin as on Azure, while the twin's own code
(`babelroom.twin`, not deployed) still comes from the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from babelroom.twin import deploytree

ROOT = Path(__file__).resolve().parents[2]

# What `python -m babelroom dev --host-only` does in stack.serve(), then a look around.
PROBE = """
import importlib, json, sys
from pathlib import Path
from babelroom.twin.deploytree import activate
tree = Path(sys.argv[1])
activate(tree)
out = {}
try:
    from babelroom.twin.host import FunctionHost
    import babelroom.twin.server  # the twin's server imports the core it shares with the app
    out["functions"] = len(FunctionHost().functions)
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
for name in ("babelroom.engine", "babelroom.engine.audio", "babelroom.bench"):
    try:
        importlib.import_module(name)
        out[name] = "importable"
    except ModuleNotFoundError:
        out[name] = "missing"
mods = ("function_app", "functions.events", "durable.speaker", "babelroom.protocol", "babelroom.adapters.storage",
        "babelroom.twin.gateway", "babelroom.twin.host")
out["files"] = {m: sys.modules[m].__file__ for m in mods if m in sys.modules}
print(json.dumps(out))
"""


def probe(tree: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE, str(tree)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"PATH": "/usr/bin:/bin", "WEBPUBSUB_HUB": "rooms"})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deploytree.build(tmp_path_factory.mktemp("deploy") / "wwwroot")


def test_function_app_comes_from_the_tree_and_the_twin_from_the_repo(tree: Path) -> None:
    got = probe(tree)
    assert got.get("functions", 0) > 10, got
    files = got["files"]
    for m in ("function_app", "functions.events", "durable.speaker", "babelroom.protocol",
              "babelroom.adapters.storage"):
        assert files[m].startswith(str(tree)), (m, files[m])
    for m in ("babelroom.twin.gateway", "babelroom.twin.host"):
        assert files[m].startswith(str(ROOT / "babelroom" / "twin")), (m, files[m])


def test_modules_excluded_by_funcignore_are_not_importable_in_the_host(tree: Path) -> None:
    got = probe(tree)
    assert (ROOT / "babelroom" / "engine" / "audio.py").exists()
    assert got["babelroom.engine"] == got["babelroom.engine.audio"] == got["babelroom.bench"] == "missing"


def test_a_module_missing_from_the_package_fails_the_host(tmp_path: Path) -> None:
    broken = deploytree.build(tmp_path / "wwwroot")
    (broken / "babelroom" / "interpreting.py").unlink()  # as if .funcignore had left it out
    got = probe(broken)
    assert "functions" not in got and "interpreting" in got["error"]


def test_activate_refuses_once_the_core_came_from_the_repo(tree: Path) -> None:
    code = ("import sys; import babelroom.protocol; from babelroom.twin.deploytree import activate\n"
            "from pathlib import Path\ntry:\n    activate(Path(sys.argv[1]))\nexcept RuntimeError as e:\n"
            "    print('refused', e)\n")
    run = subprocess.run([sys.executable, "-c", code, str(tree)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.startswith("refused") and "babelroom.protocol" in run.stdout


def test_stale_trees_of_dead_hosts_are_pruned(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"host-{dead.pid}").mkdir()
    (tmp_path / f"host-{os.getpid()}").mkdir()
    deploytree.prune_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"host-{os.getpid()}"]
