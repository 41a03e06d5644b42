"""Session fixtures: a real Azurite, the real interpreter engine and the twin host, on free ports."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelroom.twin import stack as twin_stack  # noqa: E402


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Azurite:
    connection_string: str
    blob_port: int
    queue_port: int


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    ports = [twin_stack.free_port() for _ in range(3)]
    proc = twin_stack.start_azurite(*ports, tmp_path_factory.mktemp("azurite"))
    yield Azurite(twin_stack.azurite_connection_string(*ports), ports[0], ports[1])
    _stop(proc)


@pytest.fixture(scope="session")
def engine_url() -> Iterator[str]:
    if os.environ.get("BABELROOM_TEST_ENGINE_URL"):  # reuse a running engine while developing
        yield os.environ["BABELROOM_TEST_ENGINE_URL"]
        return
    port = twin_stack.free_port()
    log = Path(tempfile.gettempdir()) / f"babelroom-engine-{port}.log"
    proc = twin_stack.start_engine(port, log)
    yield f"http://127.0.0.1:{port}/v1"
    _stop(proc)


@pytest.fixture(scope="session")
def engine() -> Any:
    """One loaded interpreter engine for every in-process engine and adapter test."""
    from babelroom.engine.pipeline import Engine

    return Engine.shared()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def endpoint(engine: Any) -> AsyncIterator[str]:
    """Base URL (http://127.0.0.1:PORT) of a local realtime endpoint on that engine."""
    from babelroom.engine.server import serve

    runner, port = await serve(engine, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@dataclass
class Stack:
    url: str
    settings: dict[str, str]
    log: Path
    # roomId -> the create response (hostKey, invites): join() uses the invite for the role asked
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    _clients: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _address(self) -> str:
        """Each request from a different documentation address (RFC 5737), as if from many people,
        so the per-address rate limits of the API do not throttle the test suite itself."""
        n = next(self._clients)
        return f"198.51.{n // 250 % 250}.{n % 250 + 1}"

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"X-Forwarded-For": self._address()}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data, hdrs | (headers or {}), method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.request("POST", path, body, headers)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.request("GET", path, headers=headers)

    def room(self, **body: Any) -> str:
        status, out = self.post("/api/rooms", body)
        assert status == 201, out
        self.rooms[out["roomId"]] = out
        return out["roomId"]

    def join(self, room_id: str, name: str, language: str, role: str = "speaker", **extra: Any) -> dict[str, Any]:
        invite = self.rooms[room_id]["invites"][role] if room_id in self.rooms else None
        status, out = self.post(f"/api/rooms/{room_id}/join",
                                {"displayName": name, "language": language, "invite": invite, **extra})
        assert status == 200, out
        return out


@pytest.fixture(scope="session")
def stack(azurite: Azurite, engine_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port = twin_stack.free_port()
    settings = twin_stack.twin_settings(port, engine_url, azurite.connection_string)
    settings["AzureWebJobsStorage"] = azurite.connection_string  # never the developer's own Azurite
    log = tmp_path_factory.mktemp("twin") / "twin.log"
    env = os.environ | settings
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "babelroom", "dev", "--host-only", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
    twin_stack.wait_for(lambda: twin_stack.http_ok(f"http://127.0.0.1:{port}/api/health"), "twin host", 60, proc)
    yield Stack(f"http://127.0.0.1:{port}", settings, log)
    _stop(proc)
