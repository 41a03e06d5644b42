"""`python -m babelroom dev | interpret | bench`."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m babelroom {dev,interpret,bench} [options]")
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
    print(f"unknown command {cmd!r}; expected dev, interpret or bench", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
