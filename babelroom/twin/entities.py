"""The twin's Durable extension, for entities: signal/read webhooks and a serialized runner.

Entity operations are passed to the registered entity function through azure-functions-durable's
own `Entity.create` handle, in the batch JSON the extension sends; state is kept between batches;
operations on one entity run one batch at a time, in arrival order. A batch whose invocation
fails (the SDK lets only framework errors escape a batch) is run again from the state saved
before it, as the extension replays it; an operation's own error only marks that operation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .host import DURABLE_PATH, FunctionHost

log = logging.getLogger(__name__)
MAX_BATCH = 50
MAX_BATCH_ATTEMPTS = 20  # ≈ 25 s of retries: a storage blip passes, a broken function is not retried forever
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0


@dataclass
class _Entity:
    name: str
    key: str
    state: str | None = None  # JSON text, as the extension stores it
    exists: bool = False
    inbox: asyncio.Queue[tuple[str, str | None]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    batches: int = 0
    errors: int = 0
    dropped: int = 0  # operations given up after MAX_BATCH_ATTEMPTS failed batches


class DurableEntities:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host
        self.entities: dict[tuple[str, str], _Entity] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    def _get(self, name: str, key: str) -> _Entity:
        ent = self.entities.get((name, key))
        if ent is None:
            ent = self.entities[(name, key)] = _Entity(name, key)
        return ent

    def signal(self, name: str, key: str, operation: str, input_json: str | None) -> None:
        if self.host.entity(name) is None:
            raise KeyError(f"no entity function named {name!r}")
        ent = self._get(name, key)
        ent.inbox.put_nowait((operation, input_json))
        if ent.task is None or ent.task.done():
            ent.task = asyncio.create_task(self._run(ent), name=f"entity {name}@{key}")

    def state(self, name: str, key: str) -> Any | None:
        ent = self.entities.get((name, key))
        if ent is None or not ent.exists or ent.state is None:
            return None
        return json.loads(ent.state)

    async def _run(self, ent: _Entity) -> None:
        fn = self.host.entity(ent.name)
        assert fn is not None
        batch: list[dict[str, Any]] = []
        attempts = 0
        while batch or not ent.inbox.empty():
            if not batch:  # a failed batch is retried as it was, then newer operations follow
                while not ent.inbox.empty() and len(batch) < MAX_BATCH:
                    op, inp = ent.inbox.get_nowait()
                    batch.append({"name": op, "input": inp, "signal": True})
            context = json.dumps({"self": {"name": ent.name, "key": ent.key}, "exists": ent.exists,
                                  "state": ent.state, "batch": batch})
            try:
                out = json.loads(await self.host.invoke(fn, context))
            except Exception:  # a crashing batch runs again from the saved state, like a replay
                attempts += 1
                ent.errors += 1
                if attempts >= MAX_BATCH_ATTEMPTS:
                    log.exception("entity %s@%s batch failed %d times; dropping %d operations",
                                  ent.name, ent.key, attempts, len(batch))
                    ent.dropped += len(batch)
                    batch, attempts = [], 0
                    continue
                log.warning("entity %s@%s batch failed (attempt %d); retrying", ent.name, ent.key, attempts,
                            exc_info=True)
                await asyncio.sleep(min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempts - 1)))
                continue
            ent.batches += 1
            ent.exists = bool(out.get("entityExists"))
            ent.state = out.get("entityState") if ent.exists else None
            for op, res in zip(batch, out.get("results", []), strict=False):
                if res.get("isError"):
                    ent.errors += 1
                    log.warning("entity %s@%s operation %s failed: %s", ent.name, ent.key, op["name"],
                                res.get("result"))
            batch, attempts = [], 0

    # -- the extension's HTTP API, as the durable client calls it -----------------------------

    def add_routes(self, app: web.Application) -> None:
        base = DURABLE_PATH + "/{secret}/entities/{name}/{key}"
        app.router.add_post(base, self._post)
        app.router.add_get(base, self._read)
        app.router.add_route("*", DURABLE_PATH + "/{tail:.*}", self._refuse)

    def _allowed(self, request: web.Request) -> bool:
        """Only the durable client this run handed the secret to (durableClient binding) gets in."""
        return hmac.compare_digest(request.match_info["secret"].encode(), self.host.durable_secret.encode())

    @staticmethod
    async def _refuse(request: web.Request) -> web.Response:
        return web.json_response({"message": "unauthorized: the durable API needs this run's secret"}, status=401)

    async def _post(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return await self._refuse(request)
        name, key = request.match_info["name"], request.match_info["key"]
        body = await request.text()
        try:
            self.signal(name, key, request.query.get("op", ""), body or None)
        except KeyError as e:
            return web.json_response({"message": str(e)}, status=400)
        return web.Response(status=202)

    async def _read(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return await self._refuse(request)
        state = self.state(request.match_info["name"], request.match_info["key"])
        if state is None:
            return web.Response(status=404)
        return web.json_response(state)
