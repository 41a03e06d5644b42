"""The entity functions called with the batch JSON the Durable extension passes, state carried
between batches as the extension carries it (JSON text)."""

from __future__ import annotations

import base64
import json

import pytest
from fakes import EntityRecord, World, run_batch

import durable.room
from babelroom.presence import Limits
from babelroom.segmenter import STATE_LIMIT

SPEAKER = "room0001.ana00001"
WHO = {"room": "room0001", "userId": SPEAKER, "name": "Ana", "language": "es"}


def loud(seq: int, nbytes: int = 6_400) -> bytes:
    """A 200 ms frame whose samples say which frame it is (and loud enough to be speech)."""
    return (3000 + seq).to_bytes(2, "little", signed=True) * (nbytes // 2)


def test_frames_carry_only_turn_seq_pcm_and_the_segment_says_who_spoke(world: World) -> None:
    rec = EntityRecord()
    frames = [loud(s) for s in range(5)]
    # out of order and once twice: the entity orders and de-duplicates
    ops = [("start", WHO | {"turn": "t1", "whole": False})]
    order = (1, 0, 2, 2, 4, 3)
    ops += [("frame", {"turn": "t1", "seq": s, "pcm": base64.b64encode(frames[s]).decode()}) for s in order]
    ops += [("end", WHO | {"turn": "t1", "frames": 5})]
    out = run_batch("speaker", SPEAKER, rec, ops)
    assert not [r for r in out["results"] if r["isError"]], out["results"]
    [msg] = world.queue.messages
    assert {k: msg[k] for k in ("room", "userId", "name", "language", "turn", "index")} == WHO | {"turn": "t1",
                                                                                               "index": 0}
    assert world.segments.blobs[msg["blob"]] == b"".join(frames)
    assert json.loads(out["results"][4]["result"])["duplicate"] is True


def test_state_survives_between_batches_and_big_segments_spill_to_blocks(world: World) -> None:
    rec = EntityRecord()
    run_batch("speaker", SPEAKER, rec, [("start", WHO | {"turn": "t2"})])
    frames = [loud(s) for s in range(12)]  # 2.4 s: past the inline limit, short of a 3 s cut
    for s, pcm in enumerate(frames):  # one batch per frame, as a slow stream arrives
        run_batch("speaker", SPEAKER, rec, [("frame", {"turn": "t2", "seq": s, "pcm": base64.b64encode(pcm).decode()})])
    assert world.segments.blocks and len(json.loads(rec.state)["chunks"]) * 6_400 < STATE_LIMIT + 6_400
    run_batch("speaker", SPEAKER, rec, [("flush", {"reason": "disconnected"})])
    [msg] = world.queue.messages
    assert msg["language"] == "es" and msg["reason"] == "end"
    assert world.segments.blobs[msg["blob"]] == b"".join(frames)


def test_the_room_entity_refuses_a_connection_past_its_cap(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable.room, "limits", Limits(max_languages=1))
    rec = EntityRecord()
    me = {"displayName": "A", "language": "es", "hear": "es", "role": "speaker"}
    run_batch("room", "room0001", rec, [("connected", me | {"userId": "room0001.a", "connectionId": "ca"}),
                                        ("connected", me | {"userId": "room0001.b", "connectionId": "cb",
                                                            "hear": "en"})])
    assert [c for c, _ in world.service.closed] == ["cb"]
    [(_, target, err)] = world.service.of("error")
    assert target == "cb" and err["code"] == "room_full"
    assert list(json.loads(rec.state)["members"]) == ["room0001.a"]


def test_a_broadcast_fault_never_loses_membership(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> None:
        raise ConnectionError("web pubsub down")

    monkeypatch.setattr(world.service, "send_to_group", lambda *a, **k: down())
    rec = EntityRecord()
    me = {"userId": "room0001.a", "displayName": "A", "language": "es", "hear": "es", "role": "speaker"}
    out = run_batch("room", "room0001", rec, [("connected", me | {"connectionId": "ca"})])
    assert not out["results"][0]["isError"] and list(json.loads(rec.state)["members"]) == ["room0001.a"]
    assert world.service.of("welcome")  # the newcomer still got its snapshot
