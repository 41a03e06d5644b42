"""docs/reliability.md from the soak figures (babelroom.bench.soak)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .procs import machine

ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """The measured commit, for the report."""
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    return "unknown"




def document(results: dict[str, Any], started: float, sizes: dict[str, Any]) -> dict[str, Any]:
    """One run's figures with what they were measured on (date, commit, machine)."""
    return {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "wall_s": round(time.time() - started, 1), "commit": git_commit(), "machine": machine(),
            "load1_at_start": os.getloadavg()[0], "sizes": sizes, "results": results}


def _ok(r: dict[str, Any], *keys: str) -> str:
    return "✅" if all(not r.get(k) for k in keys) else "❌"


def _lost(r: dict[str, Any]) -> str:
    known = r.get("lost_source_after_failure") or 0
    return f"{r['lost']} lost" + (f" ({known} at a source-language listener after failed translations, "
                                  "see Findings)" if known else "") + (
        f", {r['noticed']} only as a failure notice" if r.get("noticed") else "")


def render(out: dict[str, Any]) -> str:
    """docs/reliability.md from a soak run: what was measured, on what, and the figures."""
    m = out["machine"]
    res = out["results"]
    lines = [
        "# Reliability figures (issue 11)",
        "",
        "Written by `make soak` (`python -m babelroom.bench.soak`); do not edit by hand. The same scenarios run",
        "scaled down in `make test` (tests/reliability/, marked slow), asserting counts, never timings.",
        "",
        f"- run: {out['started_utc']} ({out['wall_s']:.0f} s), commit `{out['commit']}`",
        f"- machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
        f"kernel {m['kernel']}; load average {out['load1_at_start']:.2f} at start (the machine may be shared)",
        "- stack: Azurite, the interpreter engine and the twin host started by the soak on free ports; clients are",
        "  `babelroom.bench.soak.ReliableClient` (json.reliable.webpubsub.azure.v1 with recovery and resend, as",
        "  web/js/wps.js), rooms created and joined on the HTTP API.",
        f"- sizes: {out['sizes']}",
        "",
        "## Summary",
        "",
        "| scenario | size | result | figures |",
        "|---|---|---|---|",
    ]
    if "drops" in res:
        r = res["drops"]
        lines.append(f"| forced socket drops mid-turn | {r['drops']} speaker drops (+{r['listener_drops']} listener) "
                     f"over {r['turns']} turns | {_ok(r, 'lost', 'duplicated', 'lost_audio', 'duplicated_audio')} "
                     f"| {r['delivered']}/{r['expected']} segment captions delivered, {_lost(r)}, "
                     f"{r['duplicated']} duplicated; audio {r['lost_audio']} lost, {r['duplicated_audio']} "
                     f"duplicated |")
    if "load" in res:
        r = res["load"]
        rss = r["rss"]
        rss_txt = "; ".join(f"{k} max {v['rss_mb_max']:.0f} MB, growth {v['growth_mb']:+.0f} MB"
                            for k, v in rss.items())
        lines.append(f"| load | {r['connections']} connections, {r['rooms']} rooms, {r['speakers']} speakers, "
                     f"{r['seconds']:.0f} s | {_ok(r, 'lost', 'duplicated', 'chats_lost', 'chats_duplicated')} "
                     f"| {r['delivered']}/{r['expected']} captions, {r['chats_delivered']}/{r['chats_expected']} "
                     f"chat deliveries; captions {_lost(r)}, chat {r['chats_lost']} lost; "
                     f"{r['duplicated'] + r['chats_duplicated']} duplicated; RSS: {rss_txt} |")
    if "restart" in res:
        r = res["restart"]
        ok = r["clients_back"] and r["presence_back"] and not r["lost"] and not r["duplicated"]
        lines.append(f"| twin restart mid-room | 1 room, 3 clients, SIGKILL mid-turn | {'✅' if ok else '❌'} "
                     f"| clients back: {r['clients_back']} ({r['clients_back_s']:.0f} s after restart); "
                     f"{r['delivered']}/{r['expected']} committed segment captions delivered, {r['lost']} lost |")
    lines += ["| translator faults (timeout, 5xx, malformed stream, crash mid-segment) | — | see its tests | "
              "not measured here: tests/adapters/test_translator_faults.py (a notice at the listeners, the next "
              "segment translates) and tests/functions/test_translate_lease.py (a crashed attempt is retried) |",
              ""]
    found = []
    if any((x.get("lost_source_after_failure") or 0) for x in res.values()):
        found.append("- **Silent loss at source-language listeners when translation fails.** When the engine refuses "
                      "every target language of a segment (`server_busy`, after the one retry), "
                      "`babelroom/interpreting.py` `Interpreter.segment` sends the \"translation failed\" notice to "
                      "the target languages only; listeners of the speaker's own language get nothing. The regression "
                      "test is tests/reliability/test_failure_reaches_everyone.py.")
    if any(x.get("noticed") for x in res.values()):
        found.append("- **The engine refuses work under load** (`server_busy: engine queue is full`, 8 admitted jobs): "
                     "the segments counted \"only as a failure notice\" were not translated. Chat translation goes "
                     "through the same engine queue as speech, so chat traffic takes slots from speech.")
    r = res.get("restart") or {}
    if r.get("lost"):
        trail = {k: v for k, v in (r.get("server_trail") or {}).items() if isinstance(v, dict)}
        stuck = sum(1 for v in trail.values() if v.get("marker") and not v.get("usage_languages"))
        never = sum(1 for v in trail.values() if not v.get("marker") and not v.get("usage_languages"))
        if stuck:
            found.append(f"- **Committed segments stuck after a host restart.** {stuck} of {len(trail)} committed "
                         "segments have the translator's marker/status but no usage record: the killed host had "
                         "taken them and the redelivery did not translate them (`functions/translate.py`).")
        if never:
            found.append(f"- **Acked audio lost with the twin host.** {never} of {len(trail)} committed segments "
                         "(every frame acked before the kill) never reached the translator (no status, no usage "
                         "record): the twin's entity runner keeps signals in the host's memory "
                         "(`babelroom/twin/entities.py`), while Azure persists a signal before answering 202, so "
                         "a crash loses what the socket had already acked. Azure-only code is not affected; the "
                         "twin is more fragile than Azure here.")
    if found:
        lines += ["## Findings", "", *found, ""]
    if "drops" in res:
        r = res["drops"]
        c = r["clients"]
        lines += [
            "## 1. Forced socket drops mid-turn", "",
            f"A speaker (es) streams a {r['clip_s']} s sentence at real-time pace to listeners in en, pt and es; "
            f"{r['drops']} times (3 per turn, at seeded random frames) its TCP connection is aborted (no close frame) "
            "right after a frame was queued, and every third drop also cuts one listener. The client recovers "
            "(awps_connection_id + reconnection token) and resends every unacked event with the same ackId.",
            "Expected segments are the server's own segmenter replayed on the frames sent (voiced ones only).",
            "",
            f"- drops with events in flight: {r['drops_with_frames_in_flight']}/{r['drops']} "
            f"({r['frames_in_flight_at_drop']} events unacked at the drops in total)",
            f"- recoveries {c['recoveries']}, fresh connections {c['fresh_connections']}, events resent "
            f"{c['resent']}, replayed messages dropped by sequenceId {c['replays_deduped']}, failed acks "
            f"{c['failed_acks_n']}",
            f"- segment captions: expected {r['expected']}, delivered {r['delivered']} ({r['noticed']} only as a "
            f"failure notice), lost {r['lost']}, "
            f"duplicated {r['duplicated']}; audio lost {r['lost_audio']}, duplicated {r['duplicated_audio']}; "
            f"unpredicted segments {r['unexpected']}; translation-failure notes {r['failure_notes']}",
            f"- duration {r['duration_s']:.0f} s" + (f"; examples: {r['examples']}" if r["examples"] else ""), ""]
    if "load" in res:
        r = res["load"]
        c = r["clients"]
        lines += [
            "## 2. Load", "",
            f"{r['rooms']} rooms of 4 connections ({r['connections']} in all); in {r['speakers']} rooms a speaker "
            "loops 2–10 s sentences at real-time pace (1.5 s pause after each), the members of the other rooms "
            f"each send a chat line every {r['chat_every_s']:g} s. Every caption and audio chunk is counted at "
            "every listener, every acked chat line at every member of its room.", "",
            f"- {r['turns']} turns in {r['seconds']:.0f} s (+{r['drain_s']:.0f} s drain): captions expected "
            f"{r['expected']}, delivered {r['delivered']} ({r['noticed']} only as a failure notice), lost "
            f"{r['lost']}, duplicated {r['duplicated']}; audio lost {r['lost_audio']}, duplicated "
            f"{r['duplicated_audio']}; translation-failure notes {r['failure_notes']}",
            f"- chat: {r['chats_sent']} sent, {r['chats_refused']} refused by the service, {r['chats_expected']} "
            f"deliveries expected, {r['chats_delivered']} delivered, {r['chats_lost']} lost, "
            f"{r['chats_duplicated']} duplicated",
            f"- connections: recoveries {c['recoveries']}, fresh {c['fresh_connections']}, failed acks "
            f"{c['failed_acks_n']}", "",
            "| process | RSS start (MB) | RSS max (MB) | RSS end (MB) | growth (MB, last fifth − first fifth) |",
            "|---|---|---|---|---|"]
        for k, v in r["rss"].items():
            lines.append(f"| {k} | {v['rss_mb_start']:.0f} | {v['rss_mb_max']:.0f} | {v['rss_mb_end']:.0f} "
                         f"| {v['growth_mb']:+.0f} |")
        if r["examples"]:
            lines.append(f"\nexamples: {r['examples']}")
        lines.append("")
    if "restart" in res:
        r = res["restart"]
        lines += [
            "## 3. Twin restart mid-room", "",
            "A speaker (es) and listeners (en, pt) in one room; after a warm-up turn the speaker talks and, "
            "three frames (0.6 s) after its second segment closed, the twin host's process group gets SIGKILL; the "
            f"speaker finishes the turn, and the host is started again on the same port {r.get('down_for_s', 0):.0f} s "
            "after the kill (Azurite keeps its state). Clients reconnect by themselves "
            "(recovery, refused by the new host, then a fresh join). A segment counts as committed when every frame "
            f"up to its closing frame was acked at least {r.get('margin_s', 0.3):g} s before the kill. "
            "`server trail` (diagnosis from storage): each committed segment's translator status and usage "
            "record.", "",
            f"- server trail: {r.get('server_trail')}",
            f"- host back in {r['host_start_s']:.0f} s; every client connected again: {r['clients_back']}, "
            f"everyone present again: {r['presence_back']} ({r['clients_back_s']:.0f} s after the restart began)",
            f"- frames acked before the kill: {r['acked_frames_before_kill']}; committed segments: "
            f"{r['committed']}",
            f"- translated before the kill: {r['translated_before_kill']}; after the restart: "
            f"{r['translated_after_restart']}",
            f"- committed segment captions: expected {r['expected']}, delivered {r['delivered']}, lost {r['lost']}, "
            f"duplicated {r['duplicated']}" + (f" ({r['examples']})" if r["examples"] else ""),
            f"- a turn after the restart: {r['turn_after_restart']['delivered']}/"
            f"{r['turn_after_restart']['expected']} segment captions delivered", ""]
    return "\n".join(lines) + "\n"
