"""`python -m babelroom dev`: Azurite, the interpreter engine and the twin host, on 127.0.0.1.

Settings come from local.settings.json (Values) when present, as `func start` reads them, then
from the environment, then from twin defaults; children inherit them.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / ".tools" / "node_modules" / ".bin" / "azurite"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(blob: int, queue: int, table: int) -> str:
    h = "http://127.0.0.1"
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={h}:{blob}/devstoreaccount1;QueueEndpoint={h}:{queue}/devstoreaccount1;"
            f"TableEndpoint={h}:{table}/devstoreaccount1;")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: object, what: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start_azurite(blob: int, queue: int, table: int, location: Path,
                  log: Path | None = None) -> subprocess.Popen[bytes]:
    exe = str(AZURITE_BIN) if AZURITE_BIN.exists() else shutil.which("azurite")
    if not exe:
        raise RuntimeError("Azurite is not installed: run `make install` (npm install azurite into .tools/)")
    location.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [exe, "--silent", "--location", str(location), "--blobHost", "127.0.0.1", "--blobPort", str(blob),
         "--queueHost", "127.0.0.1", "--queuePort", str(queue), "--tableHost", "127.0.0.1",
         "--tablePort", str(table), "--skipApiVersionCheck", "--loose"],
        stdout=out, stderr=out, start_new_session=True)
    wait_for(lambda: port_open(blob) and port_open(queue), "Azurite", 30, proc)
    return proc


def start_engine(port: int, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else None  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "babelroom.engine.server", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=out, stderr=out, cwd=ROOT, start_new_session=True)
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), "interpreter engine", 180, proc)
    return proc


def twin_settings(port: int, engine_url: str, storage: str) -> dict[str, str]:
    """Twin defaults; local.settings.json and the environment win over them."""
    values = {
        "AzureWebJobsStorage": storage,
        "WebPubSubConnectionString": f"Endpoint=http://127.0.0.1:{port};AccessKey={secrets.token_urlsafe(32)};Version=1.0;",
        "WEBPUBSUB_HUB": "rooms",
        "ROOM_SERVICE": "local",
        "BABELROOM_TOKEN_KEY": secrets.token_urlsafe(32),
        "TRANSLATOR_PROVIDER": "local",
        "OPENAI_BASE_URL": engine_url,
        "REALTIME_MODEL": "gpt-realtime",
        "SEGMENTS_CONTAINER": "segments",
        "TRANSCRIPTS_CONTAINER": "transcripts",
        "SEGMENT_QUEUE": "segments",
    }
    local = ROOT / "local.settings.json"
    if local.exists():
        # not its WebPubSubConnectionString: that names the gateway beside `func start`; here the
        # twin host itself is the Web PubSub service, on its own port
        values.update({k: v for k, v in json.loads(local.read_text()).get("Values", {}).items()
                       if v and "<" not in v and k != "WebPubSubConnectionString"})
    values.update({k: os.environ[k] for k in values if k in os.environ})
    return values


def serve(port: int) -> None:
    """Run the twin host in this process (settings already in os.environ)."""
    from aiohttp import web

    from .deploytree import activate, build, prune_stale

    # the function app runs from the package azd would deploy: a module it misses fails here too
    prune_stale(ROOT / ".run" / "deploy")
    tree = ROOT / ".run" / "deploy" / f"host-{os.getpid()}"
    atexit.register(shutil.rmtree, tree, True)
    activate(build(tree / "wwwroot"))
    from .server import Twin

    twin = Twin(f"http://127.0.0.1:{port}")
    web.run_app(twin.app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m babelroom dev", description=__doc__)
    ap.add_argument("--port", type=int, default=int(os.environ.get("BABELROOM_PORT", "7071")))
    ap.add_argument("--engine-port", type=int, default=7073)
    ap.add_argument("--engine-url", help="use a running engine (OpenAI base URL) instead of starting one")
    ap.add_argument("--no-engine", action="store_true", help="do not start the engine")
    ap.add_argument("--azurite", default="10000,10001,10002", help="blob,queue,table ports")
    ap.add_argument("--data", default=str(ROOT / ".azurite"), help="Azurite data folder")
    ap.add_argument("--host-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.host_only:
        serve(args.port)
        return 0
    blob, queue, table = (int(p) for p in args.azurite.split(","))
    children: list[subprocess.Popen[bytes]] = []

    def stop(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, `kill` and a parent started in the background (SIGINT ignored) all stop the children.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    run = ROOT / ".run"
    run.mkdir(exist_ok=True)
    try:
        if not port_open(blob):
            print(f"starting Azurite on {blob}/{queue}/{table} …", flush=True)
            children.append(start_azurite(blob, queue, table, Path(args.data), run / "azurite.log"))
        engine_url = args.engine_url or f"http://127.0.0.1:{args.engine_port}/v1"
        if not args.engine_url and not args.no_engine:
            print(f"starting the interpreter engine on {args.engine_port} (loads models, ~10 s) …", flush=True)
            children.append(start_engine(args.engine_port, run / "engine.log"))
        env = twin_settings(args.port, engine_url, azurite_connection_string(blob, queue, table))
        os.environ.update(env)
        host = subprocess.Popen([sys.executable, "-m", "babelroom", "dev", "--host-only", "--port", str(args.port)],
                                cwd=ROOT, env=os.environ.copy(), start_new_session=True)
        children.append(host)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{args.port}/api/health"), "twin host", 60, host)
        print(f"\nbabelroom twin is up: open http://127.0.0.1:{args.port}/  (Ctrl-C stops it)\n", flush=True)
        with suppress(KeyboardInterrupt):
            while all(c.poll() is None for c in children):
                time.sleep(0.5)
        return 0 if all(c.poll() is None for c in children) else 1
    finally:
        for c in reversed(children):
            with suppress(ProcessLookupError):
                os.killpg(c.pid, signal.SIGTERM)
        for c in children:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(c.pid, signal.SIGKILL)


if __name__ == "__main__":
    raise SystemExit(main())
