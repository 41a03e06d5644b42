"""CPU and memory of the stack's processes, sampled with psutil while the bench runs.

Why per process tree: Azurite is node plus workers, the engine may fork model workers, and the twin
host runs the functions in-process; what a deployment must provision is each role's whole tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from typing import Any

import psutil


class Sampler:
    """Samples every `every` seconds: CPU % (100 = one core) and RSS of each role's process tree."""

    def __init__(self, pids: dict[str, int], every: float = 1.0, alone: frozenset[str] = frozenset({"bench"})) -> None:
        self.pids = dict(pids)
        self.alone = alone  # roles measured without their children (the bench started the stack)
        self.every = every
        self._procs: dict[int, psutil.Process] = {}
        self.samples: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def _tree(self, pid: int, alone: bool) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            procs = [root] if alone else [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        return [self._procs.setdefault(p.pid, p) for p in procs]  # cached: cpu_percent needs the last call

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.monotonic(), "roles": {}, "system_cpu": psutil.cpu_percent(None),
                               "load1": os.getloadavg()[0]}
        for role, pid in self.pids.items():
            cpu = rss = pss = 0.0
            n = 0
            for p in self._tree(pid, role in self.alone):
                with contextlib.suppress(psutil.Error):
                    cpu += p.cpu_percent(None)
                    r = p.memory_info().rss
                    rss += r
                    pss += _pss(p.pid) or r
                    n += 1
            row["roles"][role] = {"cpu": cpu, "rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "procs": n}
        return row

    async def _loop(self) -> None:
        self.sample()  # primes cpu_percent
        while True:
            await asyncio.sleep(self.every)
            self.samples.append(self.sample())

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self, since: float | None = None) -> dict[str, Any]:
        rows = [s for s in self.samples if since is None or s["t"] >= since]
        out: dict[str, Any] = {}
        for role in self.pids:
            cpu = [r["roles"][role]["cpu"] for r in rows if role in r["roles"]]
            rss = [r["roles"][role]["rss_mb"] for r in rows if role in r["roles"]]
            pss = [r["roles"][role]["pss_mb"] for r in rows if role in r["roles"]]
            out[role] = {"pid": self.pids[role], "cpu_mean_pct": round(sum(cpu) / len(cpu), 1) if cpu else None,
                         "cpu_max_pct": round(max(cpu), 1) if cpu else None,
                         "rss_mb_max": round(max(rss), 1) if rss else None,
                         "pss_mb_max": round(max(pss), 1) if pss else None,
                         "processes": max((r["roles"][role]["procs"] for r in rows if role in r["roles"]), default=0)}
        server = [k for k in self.pids if k != "bench"] or ["bench"]  # with --url and no pids: what we can see
        stack = [sum(v["rss_mb"] for k, v in r["roles"].items() if k in server) for r in rows]
        cpu_stack = [sum(v["cpu"] for k, v in r["roles"].items() if k in server) for r in rows]
        ncpu = psutil.cpu_count() or 1
        system = [r["system_cpu"] * ncpu for r in rows]  # 100 per core, like the per-process figures
        others = [max(0.0, r["system_cpu"] * ncpu - sum(v["cpu"] for v in r["roles"].values())) for r in rows]
        pss_stack = [sum(v["pss_mb"] for k, v in r["roles"].items() if k in server) for r in rows]
        return {"processes": out, "rss_scope": "+".join(server), "rss_mb_max": round(max(stack), 1) if stack else None,
                "pss_mb_max": round(max(pss_stack), 1) if pss_stack else None,
                "cpu_stack_mean_pct": round(sum(cpu_stack) / len(cpu_stack), 1) if cpu_stack else None,
                "cpu_stack_max_pct": round(max(cpu_stack), 1) if cpu_stack else None,
                "cpu_machine_mean_pct": round(sum(system) / len(system), 1) if system else None,
                "cpu_other_processes_mean_pct": round(sum(others) / len(others), 1) if others else None,
                "load1_max": round(max(r["load1"] for r in rows), 2) if rows else None, "samples": len(rows),
                # (seconds since the first sample, stack CPU %, other processes' CPU %): was the machine shared?
                "timeline": [[round(r["t"] - rows[0]["t"], 1),
                              round(sum(v["cpu"] for k, v in r["roles"].items() if k in server)),
                              round(o)] for r, o in zip(rows, others, strict=True)]}


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port: with --url, the twin host can still be watched."""
    try:
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except (psutil.Error, OSError):
        return None
    return None


def _pss(pid: int) -> int | None:
    """Proportional set size (shared pages split between sharers): sums over a tree without double counting."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
