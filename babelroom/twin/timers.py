"""Timer triggers in the twin: NCRONTAB schedules (six fields, seconds first) as the Functions host
reads them, and the host's admin endpoint `POST /admin/functions/{name}` that runs a non-HTTP
function once (how a test or an operator fires a timer without waiting for it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from aiohttp import web

from .host import FunctionHost, Registered

log = logging.getLogger(__name__)
_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))  # sec min hour day month weekday


def _field(spec: str, lo: int, hi: int) -> set[int]:
    """One NCRONTAB field: *, n, a-b, */s, a-b/s and comma lists."""
    values: set[int] = set()
    for part in spec.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = (int(x) for x in rng.split("-", 1))
        else:
            a = b = int(rng)
            if step_s:
                b = hi
        if not (lo <= a <= b <= hi) or step < 1:
            raise ValueError(f"schedule field {spec!r} is outside {lo}-{hi}")
        values.update(range(a, b + 1, step))
    return values


class Schedule:
    def __init__(self, expression: str) -> None:
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError(f"NCRONTAB needs six fields (second first): {expression!r}")
        self.fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True)]

    def matches(self, t: datetime) -> bool:
        sec, minute, hour, day, month, dow = self.fields
        return (t.second in sec and t.minute in minute and t.hour in hour and t.day in day
                and t.month in month and (t.weekday() + 1) % 7 in dow)


def timer_request(past_due: bool = False) -> object:
    from azure.functions.timer import TimerRequest

    return TimerRequest(past_due=past_due)


class TimerRunner:
    """Fires each timer-triggered function on its schedule (UTC), one run at a time per function."""

    def __init__(self, host: FunctionHost) -> None:
        self.host = host
        self.timers = [(f, Schedule(f.trigger["schedule"])) for f in host.by_type("timerTrigger")]
        self._task: asyncio.Task[None] | None = None
        self._running: set[str] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/admin/functions/{name}", self._admin)

    async def start(self) -> None:
        if self.timers:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def run(self, f: Registered, past_due: bool = False) -> None:
        if f.name in self._running:
            return  # the host does not overlap runs of one timer function
        self._running.add(f.name)
        try:
            await self.host.invoke(f, timer_request(past_due))
        except Exception:
            log.exception("timer function %s failed", f.name)
        finally:
            self._running.discard(f.name)

    async def _loop(self) -> None:
        last = int(time.time())
        while True:
            await asyncio.sleep(1.0 - time.time() % 1.0 + 0.005)
            now = int(time.time())
            for second in range(last + 1, now + 1):
                t = datetime.fromtimestamp(second, UTC)
                for f, schedule in self.timers:
                    if schedule.matches(t):
                        asyncio.create_task(self.run(f))
            last = now

    async def _admin(self, request: web.Request) -> web.Response:
        """The Functions admin API: run a non-HTTP function now (202), as `func` and the portal do."""
        name = request.match_info["name"]
        f = next((g for g in self.host.functions if g.name == name and g.trigger_type != "httpTrigger"), None)
        if f is None:
            return web.json_response({"error": {"code": "not_found", "message": f"no function {name}"}}, status=404)
        if f.trigger_type != "timerTrigger":
            return web.json_response({"error": {"code": "unsupported", "message": "only timer functions"}},
                                     status=400)
        await self.run(f)
        return web.Response(status=202)
