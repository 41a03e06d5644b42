"""The translator function: one closed segment from the queue → every language group of its room.

The queue delivers at least once; a marker blob created with if-none-match makes each segment
translated once even when two workers get the same message. A failed attempt removes its marker so
the queue's retry translates it; only a worker that dies mid-segment leaves it untranslated.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceExistsError

from babelroom.adapters.storage import read_segment
from babelroom.interpreting import Speaker, hear_languages

from . import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name="%SEGMENT_QUEUE%", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def translate_segment(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    job = json.loads(msg.get_body())
    s = deps.settings()
    records = deps.blob_service().get_container_client(s.transcripts_container)
    marker = f"done/{job['id'].replace(':', '/')}"
    try:
        await records.upload_blob(marker, b"", overwrite=False)
    except ResourceExistsError:
        log.info("segment %s already translated; skipping the redelivery", job["id"])
        return
    try:
        pcm = await read_segment(deps.blob_service(), s.segments_container, job["blob"])
        state = (await client.read_entity_state(df.EntityId("room", job["room"]))).entity_state
        speaker = Speaker(job["room"], job["userId"], job["name"] or "", job["language"])
        usage = await deps.interpreter().segment(speaker, job["turn"], int(job["index"]), pcm,
                                                 hear_languages(state) or {job["language"]})
    except Exception:
        await records.delete_blob(marker)
        raise
    record = {"segment": job, "usage": usage.__dict__, "at": datetime.now(UTC).isoformat()}
    await records.upload_blob(f"usage/{job['id'].replace(':', '/')}.json", json.dumps(record).encode(),
                              overwrite=True)
