"""The speaker entity: one per speaker, it segments their audio and hands closed segments on.

Python entities cannot signal other entities or start orchestrations (azure-functions-durable
1.7: DurableEntityContext has no signal_entity), so a closed segment is written to Blob and its
reference enqueued on the segment queue; the queue-triggered translator consumes it. Durable
delivers operations at least once: block ids and blob names are deterministic and the queue
message carries the segment id, so a replayed batch rewrites the same bytes and the translator
skips a segment it has already done.

Who speaks (room, name, language) arrives with `start` and `end` and stays in state; a `frame`
carries only {turn, seq, pcm}, the pcm being the client's base64 text, stored without re-encoding.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.entity import InternalEntityException

from babelroom.adapters.storage import SegmentStore, blob_service, queue_client
from babelroom.segmenter import ClosedSegment, Outcome, Segmenter, Spill, new_state
from functions import deps

bp = df.Blueprint()
segmenter = Segmenter()
WHO = ("room", "userId", "name", "language")


@cache
def _segments() -> SegmentStore:
    return SegmentStore(blob_service(deps.settings()), deps.settings().segments_container)


@cache
def _queue() -> Any:
    return queue_client(deps.settings(), deps.settings().segment_queue)


def _apply(state: dict[str, Any], op: str, data: dict[str, Any]) -> Outcome:
    if op == "start":
        return segmenter.start(state, data["turn"], bool(data.get("whole")))
    if op == "frame":
        return segmenter.frame(state, data["turn"], int(data["seq"]), data["pcm"])  # base64 text, kept as is
    if op == "silence":
        return segmenter.silence(state, data["turn"], int(data["seq"]))
    if op == "end":
        return segmenter.end(state, data["turn"], int(data["frames"]))
    if op == "flush":
        return segmenter.end(state, state["turn"], 0) if state["turn"] else Outcome()
    raise ValueError(f"unknown speaker operation {op!r}")


def _hand_off(speaker: str, who: dict[str, Any], seg: ClosedSegment) -> dict[str, Any]:
    name = SegmentStore.blob_name(speaker, seg.turn, seg.index)
    _segments().commit(name, seg.blocks, seg.tail)
    msg = {"id": f"{speaker}:{seg.turn}:{seg.index}", "room": who.get("room"), "userId": speaker,
           "name": who.get("name"), "language": who.get("language"), "turn": seg.turn, "index": seg.index,
           "blob": name, "reason": seg.reason, "seconds": seg.seconds}
    _queue().send_message(json.dumps(msg))
    return msg


class HandOffFailed(InternalEntityException):
    """Blob or Queue failed while a segment was handed off. The SDK records any other exception as
    the operation's error and keeps the state, in which the segment is already closed: it would be
    lost. Only this class fails the whole batch, so the host runs it again from the saved state
    (writes are idempotent and the translator skips a segment it has done). In the extension a
    failed out-of-process batch is an internal error, and AbortOnInternalError aborts the session
    (SessionAbortedException): the work item is abandoned and its messages processed again."""


@bp.entity_trigger(context_name="context", entity_name="speaker")
def speaker(context: df.DurableEntityContext) -> None:
    state: dict[str, Any] = context.get_state(new_state)
    try:
        data = context.get_input() or {}
    except TypeError:  # an operation sent without input
        data = {}
    if data.get("language"):  # turn.start / turn.end say who speaks; frames carry only {turn, seq, pcm}
        state["who"] = {k: data.get(k) for k in WHO}
    outcome = _apply(state, context.operation_name or "", data)
    who = state.get("who") or {"room": context.entity_key.partition(".")[0], "userId": context.entity_key}
    closed, skipped = [], []
    for action in outcome.actions:
        try:
            if isinstance(action, Spill):
                name = SegmentStore.blob_name(context.entity_key, action.turn, action.index)
                _segments().stage(name, action.block_id, action.pcm)
            elif action.worth_translating:
                closed.append(_hand_off(context.entity_key, who, action)["id"])
            else:
                skipped.append(f"{context.entity_key}:{action.turn}:{action.index}")
        except Exception as e:
            raise HandOffFailed(f"hand-off of {context.entity_key}:{action.turn}:{action.index}: {e!r}") from e
    context.set_state(state)
    context.set_result({"closed": closed, "skipped": skipped, "duplicate": outcome.duplicate, "late": outcome.late})
