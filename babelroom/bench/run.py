"""`python -m babelroom bench`: start the twin (or use `--url`), drive rooms, write JSON and PNG.

Each concurrency level runs N rooms at once; each room has one speaker and one listener in each of
the two other languages. Speakers stream synthesized clips at real-time pace, open loop (a fixed
pause after each release, never waiting for the translation), alternating the streaming strategy
with the seed's whole-turn baseline on the same clip, plus one 30 s turn. The last level repeats its
script for `--minutes` to show whether latency grows.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import psutil

from babelroom.twin import stack as twin

from . import clips as clipmod
from .driver import LANGUAGES, Api, RoomParty, Turn, make_room, turn_done, wait_done
from .metrics import PRICES, TurnResult, _r, cost_model, latency_block, pct, stage_split, summary, turn_result
from .procs import Sampler, listening_pid, machine

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".run" / "bench"


@dataclass
class Stack:
    """The twin this bench started: base URL, storage for usage records, PIDs to watch."""

    url: str
    storage: str | None
    pids: dict[str, int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    engine: bool = True

    def stop(self) -> None:
        for p in reversed(self.procs):
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            with suppress(subprocess.TimeoutExpired):
                p.wait(10)


def engine_available() -> bool:
    return importlib.util.find_spec("babelroom.engine.server") is not None


def start_stack(engine_url: str | None, log_dir: Path) -> Stack:
    """Azurite, the engine and the twin host on free ports, as tests/conftest.py starts them."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    pids: dict[str, int] = {}
    try:
        ports = [twin.free_port() for _ in range(3)]
        data = Path(tempfile.mkdtemp(prefix="babelroom-bench-azurite-"))
        az = twin.start_azurite(*ports, data, log_dir / "azurite.log")
        procs.append(az)
        pids["azurite"] = az.pid
        storage = twin.azurite_connection_string(*ports)
        has_engine = True
        if engine_url is None:
            eport = twin.free_port()
            engine_url = f"http://127.0.0.1:{eport}/v1"
            if engine_available():
                print(f"bench: starting the interpreter engine on {eport} …", file=sys.stderr, flush=True)
                eng = twin.start_engine(eport, log_dir / "engine.log")
                procs.append(eng)
                pids["engine"] = eng.pid
            else:
                has_engine = False
                print("bench: babelroom.engine.server is not there yet: speech will get no captions",
                      file=sys.stderr, flush=True)
        port = twin.free_port()
        settings = twin.twin_settings(port, engine_url, storage)
        settings["AzureWebJobsStorage"] = storage  # never the developer's own Azurite
        with open(log_dir / "twin.log", "ab") as out:
            host = subprocess.Popen([sys.executable, "-m", "babelroom", "dev", "--host-only", "--port", str(port)],
                                    cwd=ROOT, env=os.environ | settings, stdout=out, stderr=out,
                                    start_new_session=True)
        procs.append(host)
        pids["twin_host"] = host.pid
        twin.wait_for(lambda: twin.http_ok(f"http://127.0.0.1:{port}/api/health"), "twin host", 60, host)
        return Stack(f"http://127.0.0.1:{port}", storage, pids, procs, has_engine)
    except BaseException:
        Stack("", None, pids, procs).stop()
        raise


# ------------------------------------------------------------------------------------------ plans

def plan(quick: bool) -> dict[str, list[tuple[clipmod.Clip, bool]]]:
    """Per source language, the script of one speaker: (clip, whole) in order."""
    out: dict[str, list[tuple[clipmod.Clip, bool]]] = {}
    for lang in LANGUAGES:
        shorts = clipmod.short_clips(lang)
        if quick:  # the 8 s sentence: a 3 s cut while talking is certain, so the trail is always measured
            longest = max(shorts, key=lambda c: c.seconds)
            out[lang] = [(longest, False), (longest, True)]
            continue
        script: list[tuple[clipmod.Clip, bool]] = []
        for c in shorts:
            script += [(c, False), (c, True)]
        script.append((clipmod.long_clip(lang), False))
        out[lang] = script
    return out


def dead_processes(pids: dict[str, int]) -> list[str]:
    """Roles whose process is gone: a stack killed under the bench must fail the run, not skew it."""
    out = []
    for role, pid in pids.items():
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                out.append(role)
        except psutil.NoSuchProcess:
            out.append(role)
    return out


async def speak_script(party: RoomParty, script: list[tuple[clipmod.Clip, bool]], level: int, gap: float,
                       until: float | None, delay: float, pids: dict[str, int] | None = None) -> list[Turn]:
    """Open loop: a fixed pause after each release; `until` (monotonic) repeats the script."""
    await asyncio.sleep(delay)
    turns: list[Turn] = []
    while True:
        for clip, whole in script:
            dead = dead_processes(pids or {})
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited during the run")
            if until is not None and time.monotonic() + clip.seconds > until and turns:
                return turns
            turns.append(await party.speaker.speak(clip, whole, level))
            await asyncio.sleep(gap)
        if until is None or time.monotonic() >= until:
            return turns


def mean_of(usage: dict[str, dict[str, Any]], key: str) -> float | None:
    """Mean of one usage field over the segments that carry it (None without usage records)."""
    xs = [float(u[key]) for u in usage.values() if isinstance(u.get(key), int | float)]
    return sum(xs) / len(xs) if xs else None


def read_usage(storage: str | None, turns: set[str], container: str = "transcripts") -> dict[str, dict[str, Any]]:
    """The translator's usage records (timings per stage) for these turns, keyed by segment id."""
    if not storage:
        return {}
    from azure.storage.blob import BlobServiceClient

    out: dict[str, dict[str, Any]] = {}
    try:
        svc = BlobServiceClient.from_connection_string(storage)
        cc = svc.get_container_client(container)
        segs = svc.get_container_client("segments")
        for b in cc.list_blobs(name_starts_with="usage/"):
            parts = b.name.split("/")
            if len(parts) < 4 or parts[-2] not in turns:
                continue
            rec = json.loads(cc.download_blob(b.name).readall())
            usage = rec.get("usage", {})
            usage["end_wall"] = datetime.fromisoformat(rec["at"]).timestamp()
            # 1 s resolution, enough to place a backlog: segment committed (entity closed it), and
            # claimed by the translator (its lease taken when the queue message was handled)
            with suppress(Exception):
                usage["committed_wall"] = segs.get_blob_client(rec["segment"]["blob"]).get_blob_properties(
                    ).last_modified.timestamp()
            if rec.get("claimed"):
                usage["claimed_wall"] = datetime.fromisoformat(rec["claimed"]).timestamp()
            out[rec["segment"]["id"]] = usage
    except Exception as e:  # noqa: BLE001 - the stage split is optional
        print(f"bench: usage records unavailable: {e!r}", file=sys.stderr)
    return out


# ------------------------------------------------------------------------------------------ levels

async def run_level(api: Api, speakers: int, scripts: dict[str, list[tuple[clipmod.Clip, bool]]], *,
                    gap: float, minutes: float | None, sampler: Sampler, storage: str | None,
                    pids: dict[str, int] | None = None) -> dict[str, Any]:
    parties: list[RoomParty] = []
    for i in range(speakers):
        lang = LANGUAGES[i % len(LANGUAGES)]
        parties.append(await make_room(api, i, lang, [x for x in LANGUAGES if x != lang]))
    t0 = time.monotonic()
    until = t0 + minutes * 60 if minutes else None
    print(f"bench: {speakers} speaker(s){f', {minutes:g} min' if minutes else ''} …", file=sys.stderr, flush=True)
    try:
        per_room = await asyncio.gather(*(speak_script(p, scripts[p.speaker.language], speakers, gap, until,
                                                       delay=i * 0.7, pids=pids) for i, p in enumerate(parties)))
        drained = await wait_done(parties, per_room)
        t1 = time.monotonic()
    finally:
        resources = sampler.summary(since=t0)
        for p in parties:
            for x in p.everyone:
                await x.close()
    usage = await asyncio.to_thread(read_usage, storage, {t.turn for ts in per_room for t in ts})
    return summarize(speakers, parties, per_room, usage, resources, t0, t1, drained)


def summarize(speakers: int, parties: list[RoomParty], per_room: list[list[Turn]], usage: dict[str, Any],
              resources: dict[str, Any], t0: float, t1: float, drained: float) -> dict[str, Any]:
    stream: list[TurnResult] = []
    base: list[TurnResult] = []
    for party, turns in zip(parties, per_room, strict=True):
        for t in turns:
            for listener in party.listeners:
                (base if t.whole else stream).append(turn_result(t, listener))
    lat_s, lat_b = latency_block(stream), latency_block(base)
    base_clips = {r.turn.clip for r in base}
    same = [r.first_audio for r in stream if r.turn.clip in base_clips and r.first_audio is not None]
    fa_b = [r.first_audio for r in base if r.first_audio is not None]
    trails = [x for r in stream for x in r.trails]
    trails_tr = [x for r in stream for x in r.trails_translated]
    mid = t0 + (max((t.t_release for ts in per_room for t in ts), default=t0) - t0) / 2
    first_half = [r.first_audio for r in stream if r.first_audio is not None and r.turn.t_release < mid]
    second_half = [r.first_audio for r in stream if r.first_audio is not None and r.turn.t_release >= mid]

    speech_s = sum(t.seconds for ts in per_room for t in ts)
    sp_min = speech_s / 60 or 1e-9
    sp_tr = [p.speaker.client.traffic for p in parties]
    listener_min = sum(sum(t.seconds for t in ts) / 60 * len(p.listeners)
                       for p, ts in zip(parties, per_room, strict=True)) or 1e-9
    ls_tr = [x.client.traffic for p in parties for x in p.listeners]
    by_type: dict[str, list[int]] = {}
    for tr in ls_tr:
        for k, v in tr.by_type.items():
            row = by_type.setdefault(k, [0, 0, 0])
            for i in range(3):
                row[i] += v[i]
    turn_ids = {t.turn for ts in per_room for t in ts}
    n_segments = len({(c.turn, c.segment) for p in parties for c in p.listeners[0].captions if c.turn in turn_ids})
    out_audio_s = sum(r.audio_seconds for r in stream + base)
    text_chars = sum(len(c.text) for p in parties for x in p.listeners for c in x.captions if c.final and c.translated)
    traffic = {
        "speaker": {"events_per_min": round(sum(t.events_out for t in sp_tr) / sp_min, 1),
                    "event_bytes_per_min": round(sum(t.event_bytes_out for t in sp_tr) / sp_min),
                    "wire_bytes_out_per_min": round(sum(t.bytes_out for t in sp_tr) / sp_min),
                    "upstream_units_per_min": round(sum(t.billed_units_upstream for t in sp_tr) / sp_min, 1),
                    "received_messages_per_min": round(sum(t.data_in for t in sp_tr) / sp_min, 1),
                    "received_units_per_min": round(sum(t.billed_units_in for t in sp_tr) / sp_min, 1)},
        "listener": {"messages_per_min": round(sum(t.data_in for t in ls_tr) / listener_min, 1),
                     "bytes_per_min": round(sum(t.data_bytes_in for t in ls_tr) / listener_min),
                     "units_per_min": round(sum(t.billed_units_in for t in ls_tr) / listener_min, 1),
                     "by_type_per_min": {k: {"messages": round(v[0] / listener_min, 1),
                                             "bytes": round(v[1] / listener_min),
                                             "units": round(v[2] / listener_min, 1)} for k, v in by_type.items()}},
        "speech_minutes": round(speech_s / 60, 2), "listener_minutes": round(listener_min, 2),
        "segments": n_segments, "translated_audio_seconds": round(out_audio_s, 1)}
    cost = cost_model(
        upstream_units_per_min=traffic["speaker"]["upstream_units_per_min"],
        speaker_in_units_per_min=traffic["speaker"]["received_units_per_min"],
        listener_units_per_min=traffic["listener"]["units_per_min"],
        events_per_min=traffic["speaker"]["events_per_min"],
        segments_per_min=n_segments / sp_min,
        output_audio_s_per_min=out_audio_s / listener_min,
        text_chars_per_min=text_chars / listener_min)
    acks: dict[str, list[float]] = {}
    for p in parties:
        for ev, xs in p.speaker.client.ack_latency.items():
            acks.setdefault(ev, []).extend(xs)
    errors = [e for p in parties for x in p.everyone for e in x.errors]
    failed_acks = [a for p in parties for x in p.everyone for a in x.client.acks_failed]
    closed = [x.client.closed_reason for p in parties for x in p.everyone if x.client.closed_reason]

    def g(block: dict[str, Any], key: str, q: str) -> Any:
        return block[key][q]

    return {
        "speakers": speakers, "rooms": len(parties), "duration_s": round(t1 - t0, 1), "drain_s": round(drained, 1),
        "turns": sum(1 for ts in per_room for t in ts if not t.whole),
        "baseline_turns": sum(1 for ts in per_room for t in ts if t.whole),
        "first_caption_p50_s": g(lat_s, "first_caption_s", "p50"),
        "first_caption_p95_s": g(lat_s, "first_caption_s", "p95"),
        "first_caption_max_s": g(lat_s, "first_caption_s", "max"),
        "first_translated_caption_p50_s": g(lat_s, "first_translated_caption_s", "p50"),
        "first_translated_caption_p95_s": g(lat_s, "first_translated_caption_s", "p95"),
        "first_translated_caption_max_s": g(lat_s, "first_translated_caption_s", "max"),
        "first_audio_p50_s": g(lat_s, "first_audio_s", "p50"),
        "first_audio_p95_s": g(lat_s, "first_audio_s", "p95"),
        "first_audio_max_s": g(lat_s, "first_audio_s", "max"),
        "baseline_first_caption_p50_s": g(lat_b, "first_caption_s", "p50"),
        "baseline_first_audio_p50_s": g(lat_b, "first_audio_s", "p50"),
        "baseline_first_audio_p95_s": g(lat_b, "first_audio_s", "p95"),
        "baseline_first_audio_max_s": g(lat_b, "first_audio_s", "max"),
        "first_audio_p50_same_clips_s": summary(same)["p50"],
        "baseline_ratio": (round(pct(fa_b, 50) / pct(same, 50), 2) if fa_b and same and pct(same, 50) else None),
        "caption_trail_p50_s": summary(trails)["p50"], "caption_trail_p95_s": summary(trails)["p95"],
        "caption_trail_max_s": summary(trails)["max"], "caption_trail_n": len(trails),
        "caption_trail_translated_p95_s": summary(trails_tr)["p95"],
        "first_audio_p50_first_half_s": summary(first_half)["p50"],
        "first_audio_p50_second_half_s": summary(second_half)["p50"],
        "wps_units_per_listener_minute": traffic["listener"]["units_per_min"],
        "wps_units_per_speaker_minute": round(traffic["speaker"]["upstream_units_per_min"]
                                              + traffic["speaker"]["received_units_per_min"], 1),
        "usd_per_speaker_minute": cost["usd_per_speaker_minute"],
        "usd_per_speaker_minute_before_transcribe_once": cost.get("before_transcribe_once_usd_per_speaker_minute"),
        # measured by the translator (usage records): sessions opened and transcriptions per segment
        "model_sessions_per_segment": _r(mean_of(usage, "sessions")),
        "transcriptions_per_segment": _r(mean_of(usage, "transcriptions")),
        "rss_mb_max": resources["rss_mb_max"],
        "cpu_stack_mean_pct": resources["cpu_stack_mean_pct"],
        "cpu_other_processes_mean_pct": resources.get("cpu_other_processes_mean_pct"),
        "latency": {"streaming": lat_s, "baseline": lat_b},
        "t0_s": round(t0, 3),
        "stages": stage_split(stream, usage),
        "ack_latency_s": {ev: summary(xs) for ev, xs in sorted(acks.items())},
        "baseline_stages": stage_split(base, usage),
        "traffic": traffic, "cost": cost, "resources": resources,
        "problems": {"incomplete_turns": sum(1 for party, ts in zip(parties, per_room, strict=True) for t in ts
                                             for x in party.listeners if not turn_done(t, x)),
                     "error_messages": errors[:20], "failed_acks": failed_acks[:20], "closed": closed,
                     "failure_notes": sorted({n for r in stream + base for n in r.failed_notes})[:20],
                     "failed_segment_captions": sum(len(r.failed_notes) for r in stream + base)},
        "turn_rows": [r.row() for r in stream + base],
    }


async def warm_up(api: Api, scripts: dict[str, list[tuple[clipmod.Clip, bool]]]) -> dict[str, Any]:
    """One turn per source language before measuring: models load lazily, and that is not steady state."""
    out: dict[str, Any] = {}
    for i, lang in enumerate(LANGUAGES):
        party = await make_room(api, 100 + i, lang, [x for x in LANGUAGES if x != lang])
        try:
            t = await party.speaker.speak(scripts[lang][0][0], False, 0)
            await wait_done([party], [[t]], limit=90)
            rs = [turn_result(t, x) for x in party.listeners]
            out[lang] = {"first_audio_s": [None if r.first_audio is None else round(r.first_audio, 3) for r in rs]}
        finally:
            for x in party.everyone:
                await x.close()
    return out


def git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and files changed on top of it."""
    def git(*a: str) -> str:
        with suppress(Exception):
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "dirty": dirty[:30]}


def parse_pids(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = int(v)
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    stack: Stack | None = None
    if args.url:
        base, storage, pids, engine = args.url, args.storage, parse_pids(args.pids), True
        url = urlparse(base)
        if url.hostname in ("127.0.0.1", "localhost") and "twin_host" not in pids:
            pid = listening_pid(url.port or 80)
            if pid is not None and pid != os.getpid():
                pids["twin_host"] = pid
    else:
        stack = await asyncio.to_thread(start_stack, args.engine_url, LOGS)
        base, storage, pids, engine = stack.url, stack.storage, dict(stack.pids), stack.engine
    pids["bench"] = os.getpid()
    code = git_state()
    sampler = Sampler(pids, every=1.0)
    started = time.time()
    try:
        scripts = await asyncio.to_thread(plan, args.quick)
        sampler.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            api = Api(base, http)
            warm = {} if args.no_warmup else await warm_up(api, scripts)
            levels = [1] if args.quick else [int(x) for x in args.levels.split(",")]
            results = []
            for n in levels:
                soak = args.minutes if (n == max(levels) and not args.quick and args.minutes > 0) else None
                results.append(await run_level(api, n, scripts, gap=args.gap, minutes=soak, sampler=sampler,
                                               storage=storage, pids={k: v for k, v in pids.items() if k != "bench"}))
        await sampler.stop()
    finally:
        await sampler.stop()
        if stack is not None:
            await asyncio.to_thread(stack.stop)
    return {"benchmark": "babelroom room loop", "version": 1, "machine": machine(), "code": code,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_s": round(time.time() - started, 1), "url": args.url or "(started by the bench)",
            "engine": engine, "quick": args.quick, "gap_s": args.gap, "warmup": warm,
            "clips": {lang: [{"name": c.name, "voice": c.voice, "seconds": round(c.seconds, 2), "whole": w}
                             for c, w in s] for lang, s in scripts.items()},
            "prices": PRICES, "results": results}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m babelroom bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running twin (base URL) instead of starting one")
    ap.add_argument("--storage", help="with --url: its storage connection string, for the server stage split")
    ap.add_argument("--pids", help="with --url: role=pid,... of processes to watch (e.g. twin_host=123)")
    ap.add_argument("--engine-url", help="use a running engine (OpenAI base URL) when starting the twin")
    ap.add_argument("--quick", action="store_true", help="one speaker, one 8 s clip (streamed + baseline)")
    ap.add_argument("--levels", default="1,2,4", help="concurrent speakers per level (default 1,2,4)")
    ap.add_argument("--minutes", type=float, default=5.0, help="soak length at the highest level (default 5)")
    ap.add_argument("--gap", type=float, default=1.5, help="pause after each release, seconds (default 1.5)")
    ap.add_argument("--no-warmup", action="store_true", help="measure from cold (no warm-up turns)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--png", help="write the latency CDF and stage breakdown here")
    args = ap.parse_args(argv)
    out = asyncio.run(bench(args))
    text = json.dumps(out, indent=1, ensure_ascii=False)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    if args.png:
        from .report import plot

        plot(out, Path(args.png))
    print_summary(out)
    return 0


def print_summary(out: dict[str, Any]) -> None:
    keys = ("speakers", "turns", "first_caption_p50_s", "first_audio_p50_s", "first_audio_p95_s",
            "baseline_first_audio_p50_s", "baseline_ratio", "caption_trail_p95_s", "wps_units_per_listener_minute",
            "usd_per_speaker_minute", "rss_mb_max")
    for r in out["results"]:
        print("  ".join(f"{k}={r.get(k)}" for k in keys))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
