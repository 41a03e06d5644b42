"""Storage contract: config.py declares every container and queue; Bicep, `storage init` and the twin
create exactly those (issue 10 defect 3: `rooms` existed only in the twin, so POST /api/rooms was a
500 after `azd up`). Personal data expires (issue 11)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from bicep_eval import Evaluator, resource_body, resources_of_type
from test_bicep import INFRA, REPO, edit

from babelroom.config import SETTINGS, Settings
from babelroom.twin import stack as twin_stack

CONTAINER_TYPE = "Microsoft.Storage/storageAccounts/blobServices/containers"
QUEUE_TYPE = "Microsoft.Storage/storageAccounts/queueServices/queues"
# Declared in Bicep but not used by babelroom code, with the reason.
PLATFORM_CONTAINERS = {"deploymentContainer": "Flex Consumption deploys the app package from it"}
# Containers that hold personal data and so must expire (issue 11).
PERSONAL = {"rooms", "segments", "transcripts"}
ROOMS_RESOURCE = """resource roomsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: roomsContainerName
  properties: {
    publicAccess: 'None'
  }
}
"""
# Setting -> the Settings attribute naming that storage.
STORAGE_SETTINGS = {"ROOMS_CONTAINER": "rooms_container", "SEGMENTS_CONTAINER": "segments_container",
                    "TRANSCRIPTS_CONTAINER": "transcripts_container", "SEGMENT_QUEUE": "segment_queue"}


def bicep_storage(root: Path = INFRA) -> tuple[set[str], set[str]]:
    """(containers, queues) storage.bicep declares, as main.bicep instantiates it."""
    ev = Evaluator(root)
    scope = ev.scope_of("modules/storage.bicep")
    containers, queues = set(), set()
    for symbol in resources_of_type(scope.file, CONTAINER_TYPE):
        if symbol not in PLATFORM_CONTAINERS:
            name = ev.value(scope, resource_body(scope.file, symbol).get("name"))
            assert isinstance(name, str), f"container {symbol}: name not readable"
            containers.add(name)
    for symbol in resources_of_type(scope.file, QUEUE_TYPE):
        name = ev.value(scope, resource_body(scope.file, symbol).get("name"))
        assert isinstance(name, str), f"queue {symbol}: name not readable"
        queues.add(name)
    return containers, queues


def storage_problems(root: Path = INFRA) -> list[str]:
    want = Settings()
    containers, queues = bicep_storage(root)
    code_containers = set(want.containers)
    problems = [f"container {c}: used by the code, not declared in Bicep" for c in sorted(code_containers - containers)]
    problems += [f"container {c}: declared in Bicep, not in config.py" for c in sorted(containers - code_containers)]
    problems += [f"queue {q}: used by the code, not declared in Bicep" for q in sorted(set(want.queues) - queues)]
    problems += [f"queue {q}: declared in Bicep, not in config.py" for q in sorted(queues - set(want.queues))]
    ev = Evaluator(root)
    code = ev.object_var(ev.main, "codeSettings")
    for setting, attr in STORAGE_SETTINGS.items():
        if code.get(setting) != getattr(want, attr):
            problems.append(f"{setting}: Bicep sets {code.get(setting)!r}, config.py uses {getattr(want, attr)!r}")
    scope = ev.scope_of("modules/storage.bicep")
    rules = ev.array_of_objects(scope, "expiry")
    expiring = {r["container"]: r["days"] for r in rules}
    for c in sorted(PERSONAL):
        days = expiring.get(c)
        if not isinstance(days, int) or days < 1:
            problems.append(f"container {c}: personal data without a lifecycle delete rule")
    lifecycle = scope.file.text[scope.file.text.index("resource lifecycle"):]
    if "rules: [for rule in expiry:" not in lifecycle or "daysAfterModificationGreaterThan: rule.days" not in lifecycle:
        problems.append("the lifecycle policy does not apply the expiry rules")
    return problems


def test_bicep_declares_exactly_the_storage_config_declares() -> None:
    assert storage_problems() == []
    containers, queues = bicep_storage()
    assert containers == {"rooms", "segments", "transcripts"}  # the rooms container is there (defect 3)
    assert queues == {"segments", "segments-poison"}


def test_local_settings_sample_names_the_same_storage() -> None:
    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    want = Settings()
    for setting, attr in STORAGE_SETTINGS.items():
        assert setting in SETTINGS
        assert values[setting] == getattr(want, attr)
    assert Settings.from_env(values).containers == want.containers


@pytest.mark.parametrize(
    ("rel", "old", "new", "expected"),
    [
        ("modules/storage.bicep", ROOMS_RESOURCE, "", "container rooms: used by the code, not declared"),
        ("main.bicep", "    roomsContainerName: 'rooms'\n", "    roomsContainerName: 'room'\n",
         "container room: declared in Bicep, not in config.py"),
        ("modules/storage.bicep", "name: '${segmentQueueName}-poison'", "name: '${segmentQueueName}-dead'",
         "queue segments-poison: used by the code"),
        ("modules/storage.bicep", "    container: roomsContainer.name\n", "    container: 'other'\n",
         "container rooms: personal data without a lifecycle delete rule"),
        ("main.bicep", "  ROOMS_CONTAINER: storage.outputs.roomsContainerName\n", "  ROOMS_CONTAINER: 'x'\n",
         "ROOMS_CONTAINER: Bicep sets 'x'"),
        ("modules/storage.bicep", "daysAfterModificationGreaterThan: rule.days",
         "daysAfterModificationGreaterThan: 3650", "does not apply the expiry rules"),
    ],
)
def test_storage_contract_catches(rel: str, old: str, new: str, expected: str, tmp_path: Path) -> None:
    copy = tmp_path / "bicep"
    shutil.copytree(INFRA, copy)
    edit(rel, old, new)(copy)
    problems = storage_problems(copy)
    assert any(expected in p for p in problems), problems


# --- the same list, created for real in Azurite ----------------------------------------------------


def stop(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
def fresh_azurite(tmp_path: Path) -> Iterator[str]:
    """A private, empty Azurite: what exists afterwards was created by the code under test."""
    ports = [twin_stack.free_port() for _ in range(3)]
    proc = twin_stack.start_azurite(*ports, tmp_path / "azurite")
    try:
        yield twin_stack.azurite_connection_string(*ports)
    finally:
        stop(proc)


def existing(conn: str) -> tuple[set[str], set[str]]:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    blobs = {c.name for c in BlobServiceClient.from_connection_string(conn).list_containers()}
    queues = {q.name for q in QueueServiceClient.from_connection_string(conn).list_queues()}
    return blobs, queues


def test_storage_init_creates_exactly_the_declared_storage(fresh_azurite: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | {"AzureWebJobsStorage": fresh_azurite}
    cmd = [sys.executable, "-m", "babelroom", "storage", "init", "--settings", str(tmp_path / "none.json")]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    want = Settings()
    assert existing(fresh_azurite) == (set(want.containers), set(want.queues)) == bicep_storage()
    assert first.stdout.count("created ") == len(want.containers) + len(want.queues)
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "created " not in again.stdout  # idempotent


def test_storage_init_reads_local_settings_json_like_func_start(fresh_azurite: str, tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values | {"AzureWebJobsStorage": fresh_azurite,
                                                                               "ROOMS_CONTAINER": "rooms2"}}))
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    out = subprocess.run([sys.executable, "-m", "babelroom", "storage", "init", "--settings", str(settings)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rooms2" in existing(fresh_azurite)[0]


@pytest.mark.slow
def test_the_twin_creates_exactly_the_declared_storage(fresh_azurite: str, tmp_path: Path) -> None:
    """The twin must not be more forgiving than Azure: no container or queue Bicep lacks."""
    port = twin_stack.free_port()
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env |= twin_stack.twin_settings(port, "http://127.0.0.1:9/v1", fresh_azurite)
    env["AzureWebJobsStorage"] = fresh_azurite
    log = open(tmp_path / "twin.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "babelroom", "dev", "--host-only", "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        twin_stack.wait_for(lambda: twin_stack.http_ok(f"http://127.0.0.1:{port}/api/health"), "twin host", 90, proc)
        assert existing(fresh_azurite) == bicep_storage()
    finally:
        stop(proc)
        log.close()


def test_storage_init_says_what_is_wrong_when_azurite_is_down(tmp_path: Path) -> None:
    closed = twin_stack.free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["AzureWebJobsStorage"] = twin_stack.azurite_connection_string(closed, closed, closed)
    out = subprocess.run([sys.executable, "-m", "babelroom", "storage", "init", "--settings", str(tmp_path / "x")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "storage init against AzureWebJobsStorage failed" in out.stderr and "Traceback" not in out.stderr
