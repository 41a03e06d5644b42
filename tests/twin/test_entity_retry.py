"""The twin's entity runner retries a failing batch from the saved state, and the speaker entity
fails its batch (not just the operation) when Blob or Queue fails during a hand-off, so the
segment is handed off on the retry instead of being lost. Real SDK `Entity.create` handles and
batch JSON; fakes only for the storage the speaker entity writes to."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from babelroom.twin.durable import DurableEntities

import durable.speaker as speaker_mod
from babelroom.twin import durable as twin_durable


class FakeHost:
    """Just what DurableEntities needs from FunctionHost: find the entity and invoke its handle."""

    def __init__(self, handles: dict[str, Any], failures: int = 0) -> None:
        self.handles = handles
        self.failures = failures
        self.invocations = 0

    def entity(self, name: str) -> Any:
        handle = self.handles.get(name)
        return None if handle is None else type("Registered", (), {"fn": staticmethod(handle), "name": name})()

    async def invoke(self, f: Any, context: str) -> Any:
        self.invocations += 1
        if self.failures:  # the worker process failed this invocation
            self.failures -= 1
            raise ConnectionError("worker lost")
        return f.fn(context)


def enc(obj: Any) -> str:
    """An operation input as the durable client posts it (df_dumps, then JSON over HTTP)."""
    return json.dumps(json.dumps(obj))


def counter(context: Any) -> None:
    state = context.get_state(lambda: {"seen": []})
    state["seen"].append(context.get_input()["i"])
    context.set_state(state)


async def drained(entities: DurableEntities, name: str, key: str) -> Any:
    ent = entities.entities[(name, key)]
    while ent.task is not None and not ent.task.done():
        await ent.task
    return ent


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(twin_durable, "RETRY_FIRST_SECONDS", 0.001)
    monkeypatch.setattr(twin_durable, "RETRY_MAX_SECONDS", 0.005)


async def test_a_failing_batch_is_retried_from_the_saved_state() -> None:
    import azure.durable_functions as df

    host = FakeHost({"counter": df.Entity.create(counter)}, failures=2)
    entities = DurableEntities(host)  # type: ignore[arg-type]
    for i in range(3):
        entities.signal("counter", "k", "add", enc({"i": i}))
    ent = await drained(entities, "counter", "k")
    assert entities.state("counter", "k") == {"seen": [0, 1, 2]}  # each once, in order, none lost
    assert ent.errors == 2 and ent.batches == 1 and ent.dropped == 0 and host.invocations == 3


async def test_a_batch_that_never_succeeds_is_given_up_and_counted() -> None:
    import azure.durable_functions as df

    host = FakeHost({"counter": df.Entity.create(counter)}, failures=10_000)
    entities = DurableEntities(host)  # type: ignore[arg-type]
    entities.signal("counter", "k", "add", enc({"i": 1}))
    ent = await drained(entities, "counter", "k")
    assert ent.dropped == 1 and host.invocations == twin_durable.MAX_BATCH_ATTEMPTS
    host.failures = 0
    entities.signal("counter", "k", "add", enc({"i": 2}))  # the entity is not stuck behind it
    await drained(entities, "counter", "k")
    assert entities.state("counter", "k") == {"seen": [2]}


class FlakyStorage:
    """Segment blobs and the segment queue; each fails its first `fail` calls."""

    def __init__(self, fail_commit: int = 0, fail_send: int = 0) -> None:
        self.fail_commit, self.fail_send = fail_commit, fail_send
        self.blocks: dict[str, dict[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.sent: list[dict[str, Any]] = []

    def stage(self, name: str, block_id: str, pcm: bytes) -> None:
        self.blocks.setdefault(name, {})[block_id] = pcm

    def commit(self, name: str, blocks: list[str], tail: bytes) -> None:
        if self.fail_commit:
            self.fail_commit -= 1
            raise OSError("blob service unavailable")
        self.blobs[name] = b"".join(self.blocks.get(name, {})[b] for b in blocks) + tail

    def send_message(self, text: str) -> None:
        if self.fail_send:
            self.fail_send -= 1
            raise OSError("queue service unavailable")
        self.sent.append(json.loads(text))


def frames(seconds: float) -> list[str]:
    t = np.arange(int(16_000 * seconds)) / 16_000
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()
    return [base64.b64encode(pcm[i:i + 6400]).decode() for i in range(0, len(pcm), 6400)]


@pytest.mark.parametrize("fault", ["commit", "send"])
async def test_a_storage_error_during_hand_off_is_retried_not_lost(monkeypatch: pytest.MonkeyPatch,
                                                                    fault: str) -> None:
    store = FlakyStorage(fail_commit=int(fault == "commit"), fail_send=int(fault == "send"))
    monkeypatch.setattr(speaker_mod, "_segments", lambda: store)
    monkeypatch.setattr(speaker_mod, "_queue", lambda: store)
    handle = speaker_mod.speaker._function.get_user_function()
    host = FakeHost({"speaker": handle})
    entities = DurableEntities(host)  # type: ignore[arg-type]
    who = {"room": "r1", "userId": "u1", "name": "Ana", "language": "es"}
    entities.signal("speaker", "u1", "start", enc(who | {"turn": "t1"}))
    chunks = frames(1.0)
    for seq, pcm in enumerate(chunks):
        entities.signal("speaker", "u1", "frame", enc(who | {"turn": "t1", "seq": seq, "pcm": pcm}))
    entities.signal("speaker", "u1", "end", enc(who | {"turn": "t1", "frames": len(chunks)}))
    ent = await drained(entities, "speaker", "u1")
    assert ent.errors >= 1 and ent.dropped == 0
    ids = {m["id"] for m in store.sent}
    assert ids == {"u1:t1:0"}, store.sent  # handed off (a replayed batch may send it twice; ids dedupe)
    assert len(store.blobs["u1/t1/0000.pcm"]) == 32_000
    assert entities.state("speaker", "u1")["turn"] in (None, "")
