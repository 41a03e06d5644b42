"""HTTP triggers: create, join, read, remove a member from and close a room; health; the timer that
ends rooms at validUntil. Routes are the same in both hosts.

Every answer is JSON; every failure a 4xx with `{"error": {"code", "message"}}` saying why, or a
503 with Retry-After when a dependency failed. Raw exception text never reaches a client.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from babelroom.presence import participants
from babelroom.ratelimit import RateLimiter, retry_after
from babelroom.rooms import CreateRoom, JoinRoom, RoomError, Unavailable

from . import deps

bp = df.Blueprint()
log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # the largest body the API accepts; a join is ~300 bytes

# Per worker. Create: a person makes a few rooms, not 150 in a burst. Join: a page rejoins after
# a drop, so an address gets a generous burst; a room gets at most MAX_MEMBERS-ish in a wave.
CREATE_PER_ADDRESS = RateLimiter(rate=1 / 60, burst=5)
JOIN_PER_ADDRESS = RateLimiter(rate=0.5, burst=20)
JOIN_PER_ROOM = RateLimiter(rate=1.0, burst=30)
HEALTH_TTL = 5.0  # seconds a health answer is reused: probes cannot turn into dependency load


class HttpError(Exception):
    """A refusal decided here (not by the room service): status, code, message, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                      **(headers or {})})


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _body(req: func.HttpRequest) -> Any:
    """The JSON body: application/json only (415), at most MAX_BODY bytes (413), valid JSON (400)."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY:
        raise HttpError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    if not raw:
        return None
    ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HttpError(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise HttpError(400, "bad_json", "the body is not valid JSON") from None


def client_address(req: func.HttpRequest) -> str:
    """The caller's address for rate limits.

    Azure's front end appends the address it saw to X-Forwarded-For (as `ip:port`), after
    whatever the client sent itself, so the last entry is the one a client cannot choose.
    """
    forwarded = (req.headers.get("x-forwarded-for") or "").split(",")[-1].strip()
    if not forwarded:
        return req.headers.get("x-client-ip") or "unknown"
    if forwarded.startswith("["):  # [ipv6]:port
        return forwarded[1:].partition("]")[0]
    host, sep, port = forwarded.rpartition(":")
    return host if sep and port.isdigit() and host.count(":") == 0 else forwarded


def _limit(limiter: RateLimiter, key: str, what: str) -> None:
    wait = limiter.allow(key)
    if wait is not None:
        raise HttpError(429, "rate_limited", f"too many {what}; retry in {retry_after(wait)} s",
                        {"Retry-After": retry_after(wait)})


def _bearer(req: func.HttpRequest) -> str | None:
    auth = (req.headers.get("authorization") or "").strip()
    scheme, _, token = auth.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _guard(coro: Any) -> func.HttpResponse:
    try:
        return await coro
    except HttpError as e:
        return _error(e.status, e.code, str(e), e.headers)
    except Unavailable as e:
        return _error(e.status, e.code, str(e), {"Retry-After": str(e.retry_after)})
    except RoomError as e:
        return _error(e.status, e.code, str(e))
    except Exception:
        log.exception("request failed")
        return _error(500, "internal", "internal error; the request was not applied")


def _room_id(req: func.HttpRequest) -> str:
    return req.route_params.get("roomId", "")


@bp.route(route="api/rooms", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def create_room(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        parsed = CreateRoom.parse(_body(req))
        _limit(CREATE_PER_ADDRESS, client_address(req), "rooms created from this address")
        created = await deps.rooms().create(parsed)
        return _json(created.public(), 201)

    return await _guard(run())


@bp.route(route="api/rooms/{roomId}/join", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def join_room(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        parsed = JoinRoom.parse(_body(req))
        _limit(JOIN_PER_ADDRESS, client_address(req), "joins from this address")
        _limit(JOIN_PER_ROOM, _room_id(req)[:40], "joins to this room")
        ticket = await deps.rooms().join(_room_id(req), parsed)
        return _json(ticket.public())

    return await _guard(run())


@bp.route(route="api/rooms/{roomId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def get_room(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The room and who is in it, for its host and its members only."""

    async def run() -> func.HttpResponse:
        rooms = deps.rooms()
        room = await rooms.open_room(_room_id(req))
        member = await rooms.authorize(room, _bearer(req))
        state = await client.read_entity_state(df.EntityId("room", room.room_id))
        you = {"role": "host"} if member is None else {"userId": member.user_id, "role": member.role}
        return _json(room.public() | {"you": you, "participants": participants(state.entity_state)})

    return await _guard(run())


@bp.route(route="api/rooms/{roomId}/members/{userId}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
async def remove_member(req: func.HttpRequest) -> func.HttpResponse:
    """Host only: the member's record goes (their token no longer connects) and their sockets close."""

    async def run() -> func.HttpResponse:
        member = await deps.rooms().remove_member(_room_id(req), req.route_params.get("userId", ""), _bearer(req))
        return _json({"removed": member.user_id})

    return await _guard(run())


@bp.route(route="api/rooms/{roomId}/close", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def close_room(req: func.HttpRequest) -> func.HttpResponse:
    """Host only: nobody joins or connects again, and every socket of the room closes."""

    async def run() -> func.HttpResponse:
        _body(req)  # an optional body must still be JSON
        room = await deps.rooms().close(_room_id(req), _bearer(req))
        return _json(room.public() | {"closed": True})

    return await _guard(run())


@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *", run_on_startup=False)
async def end_rooms(timer: func.TimerRequest) -> None:
    """Every minute: close the sockets of rooms past their validUntil (tokens expire with the room,
    but the service does not close a live socket when its token expires)."""
    ended = await deps.rooms().end_due_rooms()
    if ended:
        log.info("ended %d rooms: %s", len(ended), ", ".join(ended))


_health: tuple[float, dict[str, Any]] | None = None


@bp.route(route="api/health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Each dependency ok or not, reused for HEALTH_TTL s; failures are logged, never shown raw."""
    global _health
    if _health is not None and time.monotonic() - _health[0] < HEALTH_TTL:
        return _json(_health[1], headers={"Cache-Control": f"max-age={int(HEALTH_TTL)}"})
    checks: dict[str, dict[str, Any]] = {}

    async def check(name: str, probe: Any) -> None:
        try:
            detail = await probe()
            checks[name] = {"ok": True, "detail": detail or "ok"}
        except Exception as e:
            log.warning("health: %s failed: %s", name, e)
            checks[name] = {"ok": False, "detail": f"{name} unreachable ({type(e).__name__}); see the logs"}

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
    body = {"status": status, "dependencies": checks}
    _health = (time.monotonic(), body)
    return _json(body, headers={"Cache-Control": f"max-age={int(HEALTH_TTL)}"})
