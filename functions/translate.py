"""The translator function: one closed segment from the queue → every language group of its room.

The queue delivers at least once, and a worker can die mid-segment. Each segment has a status
blob (`status/{segment}.json` in the transcripts container): `working` with a lease expiry while
an attempt runs (renewed every 10 s), `done` once it has been published. A worker claims a
segment by creating the status (if-none-match) or by taking over an expired lease (if-match on
its ETag), so two workers never translate the same segment at once, a finished one is never
redone, and one whose worker crashed is retried once its lease runs out instead of being dropped.
A failed attempt releases its lease so the queue's retry starts at once. A segment that still fails after host.json
maxDequeueCount attempts lands on `<queue>-poison`; `segment_poisoned` turns it into a notice to
the room's listeners.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from babelroom.adapters.storage import read_segment
from babelroom.interpreting import Speaker
from babelroom.presence import hear_languages, participants

from . import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)
LEASE_SECONDS = 30.0  # a crashed attempt's segment is retried this long after its last renewal
RENEW_SECONDS = LEASE_SECONDS / 3  # a live attempt renews its lease, however long the segment takes
POLL_SECONDS = 0.5


class LeaseHeld(RuntimeError):
    """Another live attempt holds the segment past our wait: the queue retries the message later."""


def status_name(segment_id: str) -> str:
    return f"status/{segment_id.replace(':', '/')}.json"


def _working() -> bytes:
    return json.dumps({"status": "working", "leaseUntil": time.time() + LEASE_SECONDS}).encode()


async def claim(records: Any, segment_id: str) -> str | None:
    """The ETag of our `working` status, or None when the segment is already done.

    Waits (at most one lease) while another attempt holds a live lease: that attempt either
    finishes (done → None) or dies (its lease expires → we take over).
    """
    blob = records.get_blob_client(status_name(segment_id))
    give_up = time.time() + LEASE_SECONDS + 2 * POLL_SECONDS
    while True:
        try:
            return (await blob.upload_blob(_working(), overwrite=False))["etag"]
        except ResourceExistsError:
            pass
        try:
            stream = await blob.download_blob()
            current, etag = json.loads(await stream.readall()), stream.properties.etag
        except ResourceNotFoundError:
            continue  # released meanwhile: claim it again
        if current.get("status") == "done":
            return None
        left = float(current.get("leaseUntil") or 0) - time.time()
        if left <= 0:
            try:
                return (await blob.upload_blob(_working(), overwrite=True, etag=etag,
                                               match_condition=MatchConditions.IfNotModified))["etag"]
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another worker took over (or released) first
        if time.time() > give_up:
            raise LeaseHeld(f"segment {segment_id} is held by a live attempt")
        await asyncio.sleep(min(left, POLL_SECONDS))


async def renew(records: Any, segment_id: str, etag: list[str]) -> None:
    """Keep our lease alive while the attempt runs (`etag[0]` follows each renewal); stops
    quietly if the status changed under us, which only an expired lease allows."""
    blob = records.get_blob_client(status_name(segment_id))
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            etag[0] = (await blob.upload_blob(_working(), overwrite=True, etag=etag[0],
                                              match_condition=MatchConditions.IfNotModified))["etag"]
        except (ResourceModifiedError, ResourceNotFoundError):
            log.warning("lease of %s lost while translating it", segment_id)
            return
        except Exception as e:  # a storage blip: try again at the next renewal
            log.warning("lease of %s not renewed: %r", segment_id, e)


async def release(records: Any, segment_id: str, etag: str) -> None:
    """Drop our lease after a failure so the queue's retry need not wait for it to expire."""
    try:
        await records.get_blob_client(status_name(segment_id)).delete_blob(
            etag=etag, match_condition=MatchConditions.IfNotModified)
    except Exception as e:  # the lease expires by itself
        log.warning("could not release the lease of %s: %r", segment_id, e)


async def finish(records: Any, segment_id: str) -> None:
    body = json.dumps({"status": "done", "at": datetime.now(UTC).isoformat()}).encode()
    await records.get_blob_client(status_name(segment_id)).upload_blob(body, overwrite=True)


def _speaker(job: dict[str, Any]) -> Speaker:
    return Speaker(job["room"], job["userId"], job["name"] or "", job["language"])


@bp.queue_trigger(arg_name="msg", queue_name="%SEGMENT_QUEUE%", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def translate_segment(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    job = json.loads(msg.get_body())
    s = deps.settings()
    records = deps.blob_service().get_container_client(s.transcripts_container)
    etag = await claim(records, job["id"])
    claimed = datetime.now(UTC).isoformat()
    if etag is None:
        log.info("segment %s already translated; skipping the redelivery", job["id"])
        return
    lease = [etag]
    renewing = asyncio.create_task(renew(records, job["id"], lease))
    try:
        pcm, room = await asyncio.gather(
            read_segment(deps.blob_service(), s.segments_container, job["blob"]),
            client.read_entity_state(df.EntityId("room", job["room"])))
        usage = await deps.interpreter().segment(
            _speaker(job), job["turn"], int(job["index"]), pcm,
            hear_languages(room.entity_state) or {job["language"]},
            names=[p.get("displayName") or "" for p in participants(room.entity_state)])
    except BaseException:
        renewing.cancel()
        await release(records, job["id"], lease[0])
        raise
    renewing.cancel()
    await finish(records, job["id"])
    record = {"segment": job, "usage": usage.__dict__, "claimed": claimed, "at": datetime.now(UTC).isoformat()}
    await records.upload_blob(f"usage/{job['id'].replace(':', '/')}.json", json.dumps(record).encode(),
                              overwrite=True)


@bp.queue_trigger(arg_name="msg", queue_name="%SEGMENT_QUEUE%-poison", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def segment_poisoned(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """A segment the translator gave up on: the room's listeners hear that something was lost."""
    job = json.loads(msg.get_body())
    records = deps.blob_service().get_container_client(deps.settings().transcripts_container)
    blob = records.get_blob_client(status_name(job["id"]))
    try:
        status = json.loads(await (await blob.download_blob()).readall()).get("status")
    except ResourceNotFoundError:
        status = None
    if status in ("done", "lost"):
        log.info("poisoned segment %s is %s; no notice", job["id"], status)
        return
    room = await client.read_entity_state(df.EntityId("room", job["room"]))
    languages = hear_languages(room.entity_state) or {job["language"]}
    await deps.interpreter().lost(_speaker(job), job["turn"], int(job["index"]), languages)
    await blob.upload_blob(json.dumps({"status": "lost", "at": datetime.now(UTC).isoformat()}).encode(),
                           overwrite=True)
