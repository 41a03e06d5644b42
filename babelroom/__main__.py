"""`python -m babelroom dev | interpret | bench | storage init`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

USAGE = "usage: python -m babelroom {dev,interpret,bench,storage} [options]"


def settings_values(path: Path) -> dict[str, str]:
    """local.settings.json Values under the environment, as `func start` applies them."""
    values: dict[str, str] = {}
    if path.exists():
        values.update({k: str(v) for k, v in json.loads(path.read_text()).get("Values", {}).items()})
    values.update(os.environ)
    return values


def storage(argv: list[str]) -> int:
    """`storage init`: create every container and queue config.py declares (Azurite or Azure)."""
    ap = argparse.ArgumentParser(prog="python -m babelroom storage",
                                 description="Create the blob containers and queues babelroom uses.")
    ap.add_argument("action", choices=["init", "list"])
    ap.add_argument("--settings", type=Path, default=Path("local.settings.json"),
                    help="settings file whose Values apply under the environment (default: ./local.settings.json)")
    args = ap.parse_args(argv)
    from .config import Settings

    s = Settings.from_env(settings_values(args.settings))
    if args.action == "list":
        for c in s.containers:
            print(f"container {c}")
        for q in s.queues:
            print(f"queue {q}")
        return 0
    from .adapters.storage import init

    where = f"account {s.storage_account}" if s.storage_account else "AzureWebJobsStorage"
    try:
        created = init(s, retry_total=2, initial_backoff=1, increment_base=2)
    except Exception as e:  # unreachable Azurite, no role: say what to fix, not a traceback
        print(f"storage init against {where} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for line in created:
        print(f"created {line}")
    print(f"storage ready ({where}): containers {', '.join(s.containers)}; queues {', '.join(s.queues)}")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "dev":
        from .twin.stack import main as dev

        return dev(rest)
    if cmd == "interpret":
        from .engine.cli import main as interpret

        return interpret(rest)
    if cmd == "bench":
        from .bench.run import main as bench

        return bench(rest)
    if cmd == "storage":
        return storage(rest)
    print(f"unknown command {cmd!r}; expected dev, interpret, bench or storage", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
