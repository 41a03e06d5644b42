"""The twin's HTTP server: one aiohttp app on one port, like the Functions host on 7071.

`/client/hubs/*` and `/api/hubs/*` → the Web PubSub gateway, `/runtime/webhooks/durabletask/*` →
the entity runner, everything else → the HTTP functions by their declared routes (host.json's
routePrefix is "", so `/api/...` and the web client's `/{*path}` are both function routes).
"""

from __future__ import annotations

import logging
import os

from aiohttp import web

from ..adapters.storage import ensure
from .durable import DurableEntities
from .events import FunctionEventSink
from .gateway import Gateway
from .host import FunctionHost, http_request
from .queues import QueueListener
from .timers import TimerRunner

log = logging.getLogger(__name__)


class Twin:
    """Everything the twin runs in-process; `app` is served by aiohttp."""

    def __init__(self, base_url: str) -> None:
        self.host = FunctionHost(durable_base_url=base_url)
        self.entities = DurableEntities(self.host)
        self.queues = QueueListener(self.host)
        self.timers = TimerRunner(self.host)
        self.gateway = Gateway(os.environ["WebPubSubConnectionString"], FunctionEventSink(self.host))
        self.app = web.Application(client_max_size=2 << 20)
        self.gateway.add_routes(self.app)  # before /api/{tail}: /api/hubs/* is the data plane
        self.entities.add_routes(self.app)
        self.timers.add_routes(self.app)  # POST /admin/functions/{name}, before the catch-all
        self.app.router.add_route("*", "/{tail:.*}", self._http)
        self.app.on_startup.append(self._startup)
        self.app.on_cleanup.append(self._cleanup)

    async def _startup(self, _app: web.Application) -> None:
        s = os.environ
        ensure(s, ["rooms", s.get("SEGMENTS_CONTAINER", "segments"), s.get("TRANSCRIPTS_CONTAINER", "transcripts")],
               [s.get("SEGMENT_QUEUE", "segments")])
        await self.queues.start()
        await self.timers.start()

    async def _cleanup(self, _app: web.Application) -> None:
        await self.queues.stop()
        await self.timers.stop()

    async def _http(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        found = self.host.http(request.method, tail)
        if found is None:
            message = f"no route {request.method} /{tail}"
            return web.json_response({"error": {"code": "not_found", "message": message}}, status=404)
        f, route_params = found
        req = http_request(request.method, str(request.url), dict(request.headers), dict(request.query),
                           route_params, await request.read())
        res = await self.host.invoke_http(f, req)
        headers = {k: v for k, v in res.headers.items() if k.lower() not in ("content-length", "content-type")}
        return web.Response(body=res.get_body(), status=res.status_code, headers=headers,
                            content_type=(res.mimetype or "text/plain"), charset=res.charset or None)
