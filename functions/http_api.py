"""HTTP triggers: create a room, join it, read it, and health. Routes are the same in both hosts."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from babelroom.interpreting import participants
from babelroom.rooms import CreateRoom, JoinRoom, RoomError

from . import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def _error(status: int, code: str, message: str) -> func.HttpResponse:
    return _json({"error": {"code": code, "message": message}}, status)


def _body(req: func.HttpRequest) -> Any:
    raw = req.get_body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise _BadJson(f"body is not JSON: {e}") from None


class _BadJson(Exception):
    pass


async def _guard(coro: Any) -> func.HttpResponse:
    try:
        return await coro
    except _BadJson as e:
        return _error(400, "bad_json", str(e))
    except RoomError as e:
        return _error(e.status, e.code, str(e))
    except Exception:
        log.exception("request failed")
        return _error(500, "internal", "internal error; the request was not applied")


@bp.route(route="api/rooms", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def create_room(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        room = await deps.rooms().create(CreateRoom.parse(_body(req)))
        return _json(room.public(), 201)

    return await _guard(run())


@bp.route(route="api/rooms/{roomId}/join", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def join_room(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        ticket = await deps.rooms().join(req.route_params.get("roomId", ""), JoinRoom.parse(_body(req)))
        return _json(ticket.public())

    return await _guard(run())


@bp.route(route="api/rooms/{roomId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def get_room(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        room = await deps.rooms().open_room(req.route_params.get("roomId", ""))
        state = await client.read_entity_state(df.EntityId("room", room.room_id))
        return _json(room.public() | {"participants": participants(state.entity_state)})

    return await _guard(run())


@bp.route(route="api/health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    checks: dict[str, dict[str, Any]] = {}

    async def check(name: str, probe: Any) -> None:
        try:
            detail = await probe()
            checks[name] = {"ok": True, "detail": detail or "ok"}
        except Exception as e:
            checks[name] = {"ok": False, "detail": f"{type(e).__name__}: {e}"[:300]}

    async def storage() -> str:
        await deps.room_store().ping()
        return "blob reachable"

    async def webpubsub() -> str:
        await deps.broadcaster().ping()
        return "service reachable"

    async def translator() -> str:
        ok, detail = await deps.translator().health()
        if not ok:
            raise RuntimeError(detail)
        return detail

    async def rooms() -> str:
        return deps.settings().room_service

    for name, probe in (("storage", storage), ("webpubsub", webpubsub), ("translator", translator),
                        ("rooms", rooms)):
        await check(name, probe)
    status = "ok" if all(c["ok"] for c in checks.values()) else "degraded"
    return _json({"status": status, "dependencies": checks})
