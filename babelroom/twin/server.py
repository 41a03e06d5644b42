"""The twin's HTTP server: one aiohttp app on one port, like the Functions host on 7071.

`/client/hubs/*` and `/api/hubs/*` → the Web PubSub gateway, `/runtime/webhooks/durabletask/*` →
the entity runner, everything else → the HTTP functions by their declared routes (host.json's
routePrefix is "", so `/api/...` and the web client's `/{*path}` are both function routes).
"""

from __future__ import annotations

import logging
import os
import urllib.parse

from aiohttp import web

from ..adapters.storage import init as init_storage
from ..config import Settings
from .entities import DurableEntities
from .gateway import Gateway, HttpUpstream
from .host import FunctionHost, http_request
from .queues import QueueListener
from .timers import TimerRunner
from .webpubsub_trigger import WEBHOOK_PATH, WebPubSubExtension
from .wpsauth import parse_connection_string

log = logging.getLogger(__name__)


class Twin:
    """Everything the twin runs in-process; `app` is served by aiohttp."""

    def __init__(self, base_url: str) -> None:
        self.host = FunctionHost(durable_base_url=base_url)
        self.entities = DurableEntities(self.host)
        self.queues = QueueListener(self.host)
        self.timers = TimerRunner(self.host)
        conn = os.environ["WebPubSubConnectionString"]
        # The gateway reaches the functions the way Azure Web PubSub does: CloudEvents over HTTP to the
        # extension's webhook (here, this same server), signed with the access key.
        self.extension = WebPubSubExtension(self.host, conn)
        self.upstream = HttpUpstream(base_url.rstrip("/") + WEBHOOK_PATH, [parse_connection_string(conn).access_key],
                                     origin=urllib.parse.urlsplit(parse_connection_string(conn).endpoint).hostname
                                     or "localhost")
        self.gateway = Gateway(conn, self.upstream)
        self.app = web.Application(client_max_size=2 << 20)
        self.gateway.add_routes(self.app)  # before /api/{tail}: /api/hubs/* is the data plane
        self.entities.add_routes(self.app)
        self.extension.add_routes(self.app)  # /runtime/webhooks/webpubsub, as the extension serves it
        self.timers.add_routes(self.app)  # POST /admin/functions/{name}, before the catch-all
        self.app.router.add_route("*", "/{tail:.*}", self._http)
        self.app.on_startup.append(self._startup)
        self.app.on_cleanup.append(self._cleanup)

    async def _startup(self, _app: web.Application) -> None:
        init_storage(Settings.from_env())  # exactly what config.py declares (= Bicep), nothing more
        await self.queues.start()
        await self.timers.start()

    async def _cleanup(self, _app: web.Application) -> None:
        await self.queues.stop()
        await self.upstream.close()
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
