"""The translator function's segment status on real Blob storage (Azurite), called directly with a
fake durable client and a recording interpreter: exactly once, a crashed attempt retried after
its lease, a failure releasing the lease, and the poison queue turned into a notice."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient

from babelroom.config import Settings
from babelroom.twin.host import queue_message
from functions import deps
from functions import translate as tr


class FakeDurable:
    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state

    async def read_entity_state(self, entity_id: Any) -> Any:
        return type("Response", (), {"entity_state": self.state, "entity_exists": self.state is not None})()


class RecordingInterpreter:
    def __init__(self, fail: int = 0) -> None:
        self.segments: list[tuple[str, int, set[str]]] = []
        self.lost_calls: list[tuple[str, int, set[str]]] = []
        self.fail = fail
        self.slow = 0.0

    async def segment(self, speaker: Any, turn: str, index: int, pcm: bytes, languages: set[str],
                      names: Any = ()) -> Any:
        self.segments.append((turn, index, languages))
        await asyncio.sleep(self.slow)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("model down")
        from babelroom.interpreting import Usage

        return Usage(segment_seconds=len(pcm) / 32_000, sessions=2, transcriptions=1)

    async def lost(self, speaker: Any, turn: str, index: int, languages: set[str]) -> None:
        self.lost_calls.append((turn, index, languages))


ROOM = {"members": {"a": {"hear": "es", "connections": ["c1"]}, "b": {"hear": "en", "connections": ["c2"]}}}


@pytest.fixture(scope="module")
def registered() -> dict[str, Any]:
    """The queue functions as declared in functions/translate.py (the app indexes them once per process)."""
    return {b._function.get_function_name(): b._function for b in (tr.translate_segment, tr.segment_poisoned)}


@pytest.fixture(scope="module")
def functions(registered: dict[str, Any]) -> dict[str, Any]:
    """The user functions under the durable-client middleware, so a fake client can be passed."""
    return {name: getattr(f.get_user_function(), "__wrapped__", f.get_user_function())
            for name, f in registered.items()}


@pytest.fixture
async def env(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    names = {"TRANSCRIPTS_CONTAINER": f"tr{uuid.uuid4().hex[:10]}", "SEGMENTS_CONTAINER": f"sg{uuid.uuid4().hex[:10]}"}
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for c in names.values():
        await service.create_container(c)
    interp = RecordingInterpreter()
    monkeypatch.setattr(deps, "settings", lambda: Settings.from_env(names))
    monkeypatch.setattr(deps, "blob_service", lambda: service)
    monkeypatch.setattr(deps, "interpreter", lambda: interp)
    records = service.get_container_client(names["TRANSCRIPTS_CONTAINER"])
    await service.get_container_client(names["SEGMENTS_CONTAINER"]).upload_blob("u1/t1/0000.pcm", b"\0\0" * 8000)
    yield type("Env", (), {"service": service, "records": records, "interp": interp})()
    await service.close()


def job(index: int = 0) -> bytes:
    return json.dumps({"id": f"u1:t1:{index}", "room": "r1", "userId": "u1", "name": "Ana", "language": "es",
                       "turn": "t1", "index": index, "blob": "u1/t1/0000.pcm"}).encode()


async def status(env: Any, segment_id: str = "u1:t1:0") -> dict[str, Any] | None:
    try:
        return json.loads(await (await env.records.download_blob(tr.status_name(segment_id))).readall())
    except ResourceNotFoundError:
        return None


async def run(functions: dict[str, Any], name: str, body: bytes, state: dict[str, Any] | None = ROOM) -> None:
    await functions[name](msg=queue_message("m1", body, 1, "p"), client=FakeDurable(state))


async def test_a_segment_is_translated_once_under_redelivery(functions: dict[str, Any], env: Any) -> None:
    await asyncio.gather(*(run(functions, "translate_segment", job()) for _ in range(3)))
    assert env.interp.segments == [("t1", 0, {"es", "en"})]
    assert (await status(env))["status"] == "done"
    usage = json.loads(await (await env.records.download_blob("usage/u1/t1/0.json")).readall())
    assert usage["usage"]["transcriptions"] == 1 and usage["claimed"] <= usage["at"]


async def test_a_crashed_attempt_is_retried_once_its_lease_expires(functions: dict[str, Any], env: Any) -> None:
    crashed = {"status": "working", "leaseUntil": time.time() - 1}  # a worker died mid-segment
    await env.records.upload_blob(tr.status_name("u1:t1:0"), json.dumps(crashed).encode())
    await run(functions, "translate_segment", job())
    assert len(env.interp.segments) == 1 and (await status(env))["status"] == "done"


async def test_a_live_lease_is_waited_for_then_taken_over(functions: dict[str, Any], env: Any) -> None:
    live = {"status": "working", "leaseUntil": time.time() + 1.0}  # its worker is about to be declared dead
    await env.records.upload_blob(tr.status_name("u1:t1:0"), json.dumps(live).encode())
    await run(functions, "translate_segment", job())
    assert len(env.interp.segments) == 1 and (await status(env))["status"] == "done"


async def test_a_live_attempt_that_finishes_is_not_redone(functions: dict[str, Any], env: Any) -> None:
    live = {"status": "working", "leaseUntil": time.time() + 20}
    await env.records.upload_blob(tr.status_name("u1:t1:0"), json.dumps(live).encode())
    waiting = asyncio.create_task(run(functions, "translate_segment", job()))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await env.records.upload_blob(tr.status_name("u1:t1:0"), json.dumps({"status": "done"}).encode(), overwrite=True)
    await waiting
    assert env.interp.segments == []


async def test_a_long_attempt_renews_its_lease_and_is_not_taken_over(functions: dict[str, Any], env: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tr, "LEASE_SECONDS", 0.6)
    monkeypatch.setattr(tr, "RENEW_SECONDS", 0.15)
    env.interp.slow = 2.0  # more than three leases
    first = asyncio.create_task(run(functions, "translate_segment", job()))
    await asyncio.sleep(0.3)
    await run(functions, "translate_segment", job())  # a redelivery waits for the live attempt
    await first
    assert len(env.interp.segments) == 1 and (await status(env))["status"] == "done"


async def test_a_failed_attempt_releases_its_lease_for_the_queue_retry(functions: dict[str, Any], env: Any) -> None:
    env.interp.fail = 1
    with pytest.raises(RuntimeError, match="model down"):
        await run(functions, "translate_segment", job())
    assert await status(env) is None  # released: the retry need not wait for the lease
    await run(functions, "translate_segment", job())
    assert len(env.interp.segments) == 2 and (await status(env))["status"] == "done"


async def test_a_poisoned_segment_becomes_a_notice_once(functions: dict[str, Any], env: Any) -> None:
    await run(functions, "segment_poisoned", job())
    assert env.interp.lost_calls == [("t1", 0, {"es", "en"})]
    assert (await status(env))["status"] == "lost"
    await run(functions, "segment_poisoned", job())  # the poison queue delivers at least once too
    assert len(env.interp.lost_calls) == 1


async def test_a_poisoned_segment_that_was_translated_after_all_is_not_reported(functions: dict[str, Any],
                                                                               env: Any) -> None:
    await run(functions, "translate_segment", job())
    await run(functions, "segment_poisoned", job())
    assert env.interp.lost_calls == []


def test_the_poison_queue_has_a_trigger(registered: dict[str, Any]) -> None:
    queue = {name: next(b.queue_name for b in f.get_bindings() if b.type == "queueTrigger")
             for name, f in registered.items()}
    assert queue["segment_poisoned"] == queue["translate_segment"] + "-poison" == "%SEGMENT_QUEUE%-poison"
