"""The twin's queue trigger listener: polls Azurite like the Functions queue extension does.

Messages are invisible while a function runs, deleted when it succeeds, retried when it fails,
and moved to "<queue>-poison" after host.json maxDequeueCount attempts, as in Azure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient

from ..adapters.storage import connection_string
from .host import FunctionHost, Registered, queue_message

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


def _span(value: str) -> float:
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def queue_options(host_json: Path = ROOT / "host.json") -> dict[str, Any]:
    """The twin polls with the same host.json settings the Azure host uses."""
    q = json.loads(host_json.read_text()).get("extensions", {}).get("queues", {})
    return {"poll": _span(q.get("maxPollingInterval", "00:00:01")), "batch": int(q.get("batchSize", 16)),
            "max_dequeue": int(q.get("maxDequeueCount", 5)),
            "retry_after": _span(q.get("visibilityTimeout", "00:00:00"))}


class QueueListener:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host
        self.options = queue_options(host.root / "host.json")
        self.concurrency = self.options["batch"]
        self.tasks: list[asyncio.Task[None]] = []
        self.in_flight = 0
        self.processed = 0
        self.failed = 0

    def _client(self, f: Registered, name: str) -> QueueClient:
        conn = connection_string(os.environ.get(f.trigger.get("connection") or "AzureWebJobsStorage", ""))
        return QueueClient.from_connection_string(conn, name)

    async def start(self) -> None:
        for f in self.host.by_type("queueTrigger"):
            self.tasks.append(asyncio.create_task(self._listen(f), name=f"queue {f.name}"))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _listen(self, f: Registered) -> None:
        name = f.trigger["queueName"]
        queue, poison = self._client(f, name), self._client(f, f"{name}-poison")
        for q in (queue, poison):
            try:
                await q.create_queue()
            except ResourceExistsError:
                pass
        sem = asyncio.Semaphore(self.concurrency)
        while True:
            try:
                got = 0
                async for msg in queue.receive_messages(messages_per_page=self.concurrency,
                                                        max_messages=self.concurrency, visibility_timeout=60):
                    got += 1
                    await sem.acquire()
                    asyncio.create_task(self._one(f, queue, poison, msg, sem))
                if not got:
                    await asyncio.sleep(self.options["poll"])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # storage blip: keep listening
                log.warning("queue %s poll failed: %r", name, e)
                await asyncio.sleep(1)

    async def _one(self, f: Registered, queue: QueueClient, poison: QueueClient, msg: Any,
                   sem: asyncio.Semaphore) -> None:
        self.in_flight += 1
        try:
            body = base64.b64decode(msg.content)
            await self.host.invoke(f, queue_message(msg.id, body, msg.dequeue_count, msg.pop_receipt))
            await queue.delete_message(msg.id, msg.pop_receipt)
            self.processed += 1
        except Exception:
            self.failed += 1
            log.exception("%s failed on message %s (attempt %s)", f.name, msg.id, msg.dequeue_count)
            if msg.dequeue_count >= self.options["max_dequeue"]:
                await poison.send_message(msg.content)
                await queue.delete_message(msg.id, msg.pop_receipt)
            else:
                retry = max(1, int(self.options["retry_after"]))
                await queue.update_message(msg.id, msg.pop_receipt, visibility_timeout=retry)
        finally:
            self.in_flight -= 1
            sem.release()
