"""Gateway events → the registered `webPubSubTrigger` functions, as the Functions extension does.

The request JSON mirrors what the extension hands a non-.NET worker: `connectionContext`
plus `claims`/`query`/`subprotocols` for connect, `data`/`dataType` for user events, `reason` for
disconnected. A connect or user-event function answers with the extension's response JSON:
`{"userId", "groups", "roles", "subprotocol"}` / `{"data", "dataType"}`, or
`{"code", "errorMessage"}` to refuse.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .gateway import ConnectionContext, ConnectRequest, ConnectResult, UserEventResult
from .host import FunctionHost

log = logging.getLogger(__name__)


def _context(ctx: ConnectionContext) -> dict[str, Any]:
    return {"hub": ctx.hub, "connectionId": ctx.connection_id, "userId": ctx.user_id,
            "eventType": ctx.event_type, "eventName": ctx.event_name, "signature": ctx.signature,
            "headers": ctx.headers or {}, "states": ctx.states or {}}


def _response(raw: Any) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    return raw if isinstance(raw, dict) else json.loads(raw)


class FunctionEventSink:
    def __init__(self, host: FunctionHost) -> None:
        self.host = host

    async def connect(self, hub: str, request: ConnectRequest) -> ConnectResult:
        f = self.host.webpubsub(hub, "system", "connect")
        if f is None:  # no connect handler: the service accepts with the token's identity
            return ConnectResult(ok=True, user_id=request.context.user_id)
        body = {"connectionContext": _context(request.context), "claims": request.claims,
                "query": request.query, "subprotocols": request.subprotocols,
                "clientCertificates": request.client_certificates}
        try:
            res = _response(await self.host.invoke(f, json.dumps(body)))
        except Exception as e:
            log.exception("connect handler failed")
            return ConnectResult(ok=False, error_code="serverError", error_message=type(e).__name__)
        if res.get("code"):
            return ConnectResult(ok=False, error_code=res["code"], error_message=res.get("errorMessage"))
        return ConnectResult(ok=True, user_id=res.get("userId") or request.context.user_id,
                             groups=list(res.get("groups") or []), roles=list(res.get("roles") or []),
                             subprotocol=res.get("subprotocol"))

    async def connected(self, hub: str, context: ConnectionContext) -> None:
        await self._notify(hub, "connected", {"connectionContext": _context(context)})

    async def disconnected(self, hub: str, context: ConnectionContext, reason: str | None) -> None:
        await self._notify(hub, "disconnected", {"connectionContext": _context(context), "reason": reason})

    async def _notify(self, hub: str, event: str, body: dict[str, Any]) -> None:
        f = self.host.webpubsub(hub, "system", event)
        if f is None:
            return
        try:
            await self.host.invoke(f, json.dumps(body))
        except Exception:
            log.exception("%s handler failed", event)

    async def user_event(self, hub: str, event: str, context: ConnectionContext, data: Any,
                         data_type: str) -> UserEventResult:
        f = self.host.webpubsub(hub, "user", event)
        if f is None:
            return UserEventResult(ok=False, error_code="userError",
                                   error_message=f"unknown_event: no handler for event {event!r}")
        if isinstance(data, bytes):  # binary frames travel base64-encoded, as the extension passes them
            import base64

            data = base64.b64encode(data).decode("ascii")
        elif data_type == "json":  # JSON data arrives as its text; the function parses it
            data = json.dumps(data)
        body = {"connectionContext": _context(context), "data": data, "dataType": data_type}
        try:
            res = _response(await self.host.invoke(f, json.dumps(body)))
        except Exception as e:
            log.exception("user event %s failed", event)
            return UserEventResult(ok=False, error_code="serverError", error_message=type(e).__name__)
        if res.get("code"):
            return UserEventResult(ok=False, error_code=res["code"], error_message=res.get("errorMessage"))
        if "data" in res:
            return UserEventResult(ok=True, data=res["data"], data_type=res.get("dataType", "json"))
        return UserEventResult(ok=True)
