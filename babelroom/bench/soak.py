"""`python -m babelroom.bench.soak` (`make soak`): the reliability figures of issue 11, measured.

Three scenarios, each driven only through the public surfaces (the HTTP API and the Web PubSub
client protocol), so they hold whatever the server looks like inside:

1. **drops**: a speaker's TCP connection is cut (no close frame) right after it queued frames, N
   times mid-turn; the client recovers the reliable connection and resends what was not acked.
   At every listener each segment of each turn must arrive once: no loss, no duplicate.
2. **load**: 40 connections in 10 rooms, 4 of them with a speaker talking, the others chatting;
   every caption, audio chunk and chat line is counted at every member; RSS of the stack's
   processes is sampled (maximum and growth).
3. **restart**: the twin host is killed (SIGKILL) mid-turn and started again on the same port;
   clients come back by themselves, and every segment committed before the kill is translated.

The pytest versions (tests/reliability/) run the same functions at a smaller size; this module's
`main` runs them at full size against a stack it starts, and writes docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp

from babelroom.twin import stack as twin

from . import clips as clipmod
from .driver import Turn
from .procs import Sampler, listening_pid
from .reliable import Member, Party, close_all, party, until
from .soak_report import document, render
from .tally import Tally, clients_summary, count_chats, count_turn, drain, expected_segments, tally_row

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".run" / "soak"
LANGS = ("es", "en", "pt")


# ------------------------------------------------------------------------------- scenarios

async def drops(base: str, n: int = 100, per_turn: int = 3, seed: int = 11, language: str = "es") -> dict[str, Any]:
    """N forced socket drops mid-turn; every third drop also cuts a listener's socket."""
    rng = random.Random(seed)
    clip = max(clipmod.short_clips(language), key=lambda c: c.seconds)
    nframes = len(clipmod.frames(clip.pcm))
    listen = [x for x in LANGS if x != language] + [language]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        p = await party(http, base, 0, language, listen)
        turns: list[Turn] = []
        done = 0
        in_flight: list[int] = []
        listener_kills = 0
        t0 = time.monotonic()
        try:
            while done < n:
                k = min(per_turn, n - done)
                at = set(rng.sample(range(2, nframes - 1), k))

                async def after(seq: int, at: set[int] = at) -> None:
                    nonlocal done, listener_kills
                    if seq not in at:
                        return
                    await asyncio.sleep(0)  # let the writer put the frame on the wire: it is in flight
                    in_flight.append(p.speaker.rc.kill())
                    done += 1
                    if done % 3 == 0:
                        p.listeners[done // 3 % len(p.listeners)].rc.kill()
                        listener_kills += 1

                turns.append(await p.speaker.speak(clip, False, 1, after_frame=after))
                await asyncio.sleep(1.0)
            await drain([p], [turns])
            t1 = time.monotonic()
        finally:
            await close_all([p])
    tally = Tally()
    for t in turns:
        for x in p.listeners:
            count_turn(tally, t, x, others=p.listeners)
    return {"scenario": "drops", "drops": done, "listener_drops": listener_kills, "turns": len(turns),
            "clip_s": round(clip.seconds, 1), "frames_in_flight_at_drop": sum(in_flight),
            "drops_with_frames_in_flight": sum(1 for x in in_flight if x), "duration_s": round(t1 - t0, 1),
            "clients": clients_summary([p]), **tally.row()}


async def load(base: str, pids: dict[str, int], rooms: int = 10, per_room: int = 4, speakers: int = 4,
               seconds: float = 300.0, chat_every: float = 60.0, gap: float = 1.5) -> dict[str, Any]:
    """`rooms` rooms of `per_room` connections; `speakers` of them talk, the others chat."""
    sampler = Sampler(pids, every=1.0, alone=frozenset())
    sampler.start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        parties: list[Party] = []
        try:
            for i in range(rooms):
                lang = LANGS[i % len(LANGS)]
                listen = [LANGS[(LANGS.index(lang) + j) % len(LANGS)] for j in range(1, per_room)]
                parties.append(await party(http, base, i, lang, listen))
            scripts = {lang: clipmod.short_clips(lang) for lang in LANGS}
            t0 = time.monotonic()
            until_t = t0 + seconds
            chats: list[tuple[Member, str, asyncio.Future[dict[str, Any]]]] = []

            async def talk(p: Party, delay: float) -> list[Turn]:
                await asyncio.sleep(delay)
                out: list[Turn] = []
                script = scripts[p.speaker.language]
                while True:
                    for c in script:
                        if time.monotonic() + c.seconds > until_t and out:
                            return out
                        out.append(await p.speaker.speak(c, False, speakers))
                        await asyncio.sleep(gap)

            async def chat(x: Member, delay: float) -> None:
                await asyncio.sleep(delay)
                while time.monotonic() < until_t:
                    nonce = f"n{uuid.uuid4().hex[:10]}"
                    chats.append((x, nonce, x.client.send_event("chat", {"text": f"{nonce} hola, una prueba"})))
                    await asyncio.sleep(chat_every)

            talkers = parties[:speakers]
            chatters = [x for p in parties[speakers:] for x in p.everyone]
            tasks = [chat(x, i * chat_every / max(1, len(chatters))) for i, x in enumerate(chatters)]
            _, *per_room_turns = await asyncio.gather(asyncio.gather(*tasks),
                                                      *(talk(p, i * 0.7) for i, p in enumerate(talkers)))
            t1 = time.monotonic()
            members = {p.room["roomId"]: p.everyone for p in parties}

            def chats_in() -> bool:
                t = Tally()
                count_chats(t, chats, members)  # type: ignore[arg-type]
                return not t.chats_lost

            await drain(talkers, list(per_room_turns), extra=chats_in)
            t2 = time.monotonic()
        finally:
            await sampler.stop()
            await close_all(parties)
    tally = Tally()
    for p, ts in zip(talkers, per_room_turns, strict=True):
        for t in ts:
            for x in p.listeners:
                count_turn(tally, t, x, others=p.listeners)
    count_chats(tally, chats, members)  # type: ignore[arg-type]
    return {"scenario": "load", "connections": sum(len(p.everyone) for p in parties), "rooms": rooms,
            "speakers": speakers, "chat_every_s": chat_every, "seconds": round(t1 - t0, 1),
            "drain_s": round(t2 - t1, 1),
            "turns": sum(len(ts) for ts in per_room_turns), "rss": rss_figures(sampler, t0, t1),
            "clients": clients_summary(parties), **tally.row()}


def rss_figures(sampler: Sampler, t0: float, t1: float) -> dict[str, Any]:
    """Per process: max RSS, and growth = mean of the last fifth of the run − mean of the first fifth."""
    rows = [s for s in sampler.samples if t0 <= s["t"] <= t1]
    out: dict[str, Any] = {}
    if not rows:
        return out
    fifth = max(1, len(rows) // 5)
    for role in sampler.pids:
        xs = [r["roles"][role]["rss_mb"] for r in rows if r["roles"].get(role, {}).get("procs")]
        if not xs:
            continue
        first, last = xs[:fifth], xs[-fifth:]
        out[role] = {"rss_mb_start": round(xs[0], 1), "rss_mb_max": round(max(xs), 1),
                     "rss_mb_end": round(xs[-1], 1),
                     "growth_mb": round(sum(last) / len(last) - sum(first) / len(first), 1), "samples": len(xs)}
    return out


@dataclass
class Host:
    """A twin host this process started, so it can kill it and start it again on the same port."""

    port: int
    settings: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "babelroom", "dev", "--host-only", "--port", str(self.port)],
                cwd=ROOT, env=os.environ | self.settings, stdout=out, stderr=out, start_new_session=True)
        twin.wait_for(lambda: twin.http_ok(f"{self.url}/api/health"), "twin host", timeout, self.proc)

    def kill(self) -> None:
        """SIGKILL to the host's whole process group: no shutdown handler runs, as in a crash."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def storage_trail(storage: str, segment_ids: list[str], container: str = "transcripts") -> dict[str, Any]:
    """Where each segment ended up on the server side (diagnosis only, never asserted on): its
    exactly-once marker, its usage record and the languages it was interpreted into, and how many
    messages wait in the segment queue and its poison queue."""
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    out: dict[str, Any] = {}
    try:
        cc = BlobServiceClient.from_connection_string(storage).get_container_client(container)
        for sid in segment_ids:
            path = sid.replace(":", "/")
            marker: Any = cc.get_blob_client(f"done/{path}").exists()
            with contextlib.suppress(Exception):  # the translator's status lease, where it has one
                marker = json.loads(cc.download_blob(f"status/{path}.json").readall()).get("status")
            usage, original = None, None
            with contextlib.suppress(Exception):
                rec = json.loads(cc.download_blob(f"usage/{path}.json").readall())
                usage = sorted(rec.get("usage", {}).get("texts", {}))
                original = rec.get("usage", {}).get("original", "")[:40]
            out[sid] = {"marker": marker, "usage_languages": usage, "original": original}
        for q in ("segments", "segments-poison"):
            with contextlib.suppress(Exception):
                props = QueueClient.from_connection_string(storage, q).get_queue_properties()
                out[f"queue:{q}"] = props.approximate_message_count
    except Exception as e:  # noqa: BLE001 - diagnosis is best effort
        out["error"] = repr(e)
    return out


def new_host(engine_url: str, storage: str, log: Path) -> Host:
    port = twin.free_port()
    settings = twin.twin_settings(port, engine_url, storage)
    settings["AzureWebJobsStorage"] = storage
    log.parent.mkdir(parents=True, exist_ok=True)
    return Host(port, settings, log)


async def restart(host: Host, language: str = "es", after_segments: int = 2, delay_frames: int = 3,
                  down_s: float = 2.0, margin_s: float = 0.3, wait_s: float = 120.0) -> dict[str, Any]:
    """Kill the host mid-turn, `delay_frames` frames after the `after_segments`-th segment closed (so
    its translation is under way), start it again. A segment is committed when every frame up to its
    closing frame was acked at least `margin_s` before the kill."""
    base = host.url
    listen = [x for x in LANGS if x != language]
    long = clipmod.long_clip(language, seconds=15)
    plan = Turn("", "", language, "plan", long.name, long.voice, False, long.seconds, pcm=long.pcm)
    closing = [g.last_seq for g in plan.segments if g.reason not in ("end", "switch")]
    kill_seq = closing[min(after_segments, len(closing)) - 1] + delay_frames
    short = max(clipmod.short_clips(language), key=lambda c: c.seconds)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        p = await party(http, base, 0, language, listen)
        try:
            warm = await p.speaker.speak(short, False, 1)
            await drain([p], [[warm]], quiet=30)  # all of it: a kill must not catch the warm-up
            killed_at = 0.0

            async def after(seq: int) -> None:
                nonlocal killed_at
                if seq == kill_seq:
                    killed_at = time.monotonic()
                    await asyncio.to_thread(host.kill)

            rc = p.speaker.rc
            turn = await p.speaker.speak(long, False, 1, after_frame=after)
            acked = {seq: t for ev, seq, t in rc.ack_log if ev == "audio" and isinstance(seq, int)}
            before = {x.name: {c.segment for c in x.captions if c.turn == turn.turn and c.final and c.t < killed_at}
                      for x in p.listeners}
            await asyncio.sleep(max(0.0, killed_at + down_s - time.monotonic()))
            t_restart = time.monotonic()
            down_for = t_restart - killed_at
            await asyncio.to_thread(host.start)
            host_up_s = time.monotonic() - t_restart
            back = await until(lambda: all(x.rc.connected.is_set() and x.rc.fresh_connections + x.rc.recoveries
                                           for x in p.everyone), 60)
            present = await until(lambda: max(x.participants for x in p.everyone) >= len(p.everyone), 30)
            back_s = time.monotonic() - t_restart
            ok = [s for s, t in acked.items() if t <= killed_at - margin_s]
            contiguous = -1
            while contiguous + 1 in ok:
                contiguous += 1
            committed = expected_segments(turn, upto_seq=contiguous + 1) if contiguous >= 0 else []

            def got_committed() -> bool:
                return all(s in {c.segment for c in x.captions if c.turn == turn.turn and c.final
                                 and c.language == x.language} for x in p.listeners for s in committed)

            await until(got_committed, wait_s, 0.5)
            after_turn = await p.speaker.speak(short, False, 1)
            await drain([p], [[after_turn]], quiet=30)
        finally:
            await close_all([p])
    tally = Tally()
    for x in p.listeners:
        count_turn(tally, turn, x, committed)
    after_tally = Tally()
    for x in p.listeners:
        count_turn(after_tally, after_turn, x)
    after_restart = {x.name: sorted({c.segment for c in x.captions if c.turn == turn.turn and c.final
                                     and c.t >= killed_at and c.language == x.language} & set(committed))
                     for x in p.listeners}
    trail = await asyncio.to_thread(storage_trail, host.settings["AzureWebJobsStorage"],
                                    [f"{turn.user}:{turn.turn}:{i}" for i in committed])
    others = await asyncio.to_thread(storage_trail, host.settings["AzureWebJobsStorage"],
                                     [f"{t.user}:{t.turn}:{i}" for t in (warm, after_turn)
                                      for i in expected_segments(t)])
    timeline = {x.name: [(round(t - killed_at, 2), what) for t, what in x.rc.timeline] for x in p.everyone}
    heard = {x.name: [(round(c.t - killed_at, 2), c.turn[:5], c.segment) for c in x.captions
                      if c.final and c.language == x.language] for x in p.listeners}
    return {"scenario": "restart", "clients": clients_summary([p]), "server_trail": trail,
            "server_trail_other_turns": others,
            "other_turns": {"warm": tally_row(warm, p), "after": tally_row(after_turn, p)},
            "timeline_since_kill": timeline, "finals_since_kill": heard,
            "clients_back": back, "presence_back": present,
            "margin_s": margin_s, "down_for_s": round(down_for, 1), "host_start_s": round(host_up_s, 1),
            "clients_back_s": round(back_s, 1),
            "committed": committed, "acked_frames_before_kill": contiguous + 1,
            "translated_before_kill": {k: sorted(v & set(committed)) for k, v in before.items()},
            "translated_after_restart": after_restart,
            "turn_after_restart": after_tally.row(), **tally.row()}


# ------------------------------------------------------------------------------------ main

def stack_pids(base: str, settings: dict[str, str] | None, engine_url: str | None) -> dict[str, int]:
    """The processes to watch, found by the ports they listen on (host, engine, and the gateway if apart)."""
    ports: dict[str, int | None] = {"twin_host": urlparse(base).port}
    if engine_url:
        ports["engine"] = urlparse(engine_url).port
    endpoint = (settings or {}).get("WebPubSubConnectionString", "").split(";")[0].removeprefix("Endpoint=")
    if endpoint and urlparse(endpoint).port not in (None, ports["twin_host"]):
        ports["gateway"] = urlparse(endpoint).port
    out = {}
    for role, port in ports.items():
        pid = listening_pid(port) if port else None
        if pid is not None:
            out[role] = pid
    return out


async def soak(args: argparse.Namespace, save: Callable[[dict[str, Any]], None] = lambda _: None) -> dict[str, Any]:
    """Start Azurite, the engine and a twin host; run the scenarios in order; `save` gets the document
    after each one, so a run cut short still leaves the figures it measured."""
    LOGS.mkdir(parents=True, exist_ok=True)
    sizes = {"drops": args.drops, "load_seconds": args.load_seconds, "restart": args.restart}
    procs: list[subprocess.Popen[bytes]] = []
    started = time.time()
    try:
        ports = [twin.free_port() for _ in range(3)]
        data = Path(tempfile.mkdtemp(prefix="babelroom-soak-azurite-"))
        procs.append(twin.start_azurite(*ports, data, LOGS / "azurite.log"))
        storage = twin.azurite_connection_string(*ports)
        engine_url = args.engine_url
        if engine_url is None:
            eport = twin.free_port()
            print(f"soak: starting the interpreter engine on {eport} …", file=sys.stderr, flush=True)
            procs.append(twin.start_engine(eport, LOGS / "engine.log"))
            engine_url = f"http://127.0.0.1:{eport}/v1"
        host = new_host(engine_url, storage, LOGS / "twin.log")
        host.start()
        results: dict[str, Any] = {}
        try:
            if args.drops:
                print(f"soak: {args.drops} socket drops …", file=sys.stderr, flush=True)
                results["drops"] = await drops(host.url, args.drops)
                save(document(results, started, sizes))
            if args.load_seconds:
                print(f"soak: load for {args.load_seconds:g} s …", file=sys.stderr, flush=True)
                pids = stack_pids(host.url, host.settings, engine_url)
                results["load"] = await load(host.url, pids, seconds=args.load_seconds)
                save(document(results, started, sizes))
            if args.restart:
                print("soak: twin restart …", file=sys.stderr, flush=True)
                results["restart"] = await restart(host, wait_s=args.restart_wait)
        finally:
            host.stop()
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
    return document(results, started, sizes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m babelroom.bench.soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drops", type=int, default=100, help="forced socket drops (0 skips)")
    ap.add_argument("--load-seconds", type=float, default=300.0, help="load length (0 skips)")
    ap.add_argument("--no-restart", dest="restart", action="store_false", help="skip the twin restart")
    ap.add_argument("--restart-wait", type=float, default=80.0,
                    help="how long to wait for committed segments after the restart (the queue redelivers a "
                         "message taken by the killed host after its 60 s visibility timeout)")
    ap.add_argument("--engine-url", help="use a running engine instead of starting one")
    ap.add_argument("--json", default=str(ROOT / ".run" / "soak" / "soak.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "reliability.md"))
    args = ap.parse_args(argv)

    def save(out: dict[str, Any]) -> None:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        Path(args.out).write_text(render(out))

    out = asyncio.run(soak(args, save))
    save(out)
    print(json.dumps({k: {kk: v.get(kk) for kk in ("expected", "delivered", "lost", "duplicated", "chats_lost")}
                      for k, v in out["results"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
