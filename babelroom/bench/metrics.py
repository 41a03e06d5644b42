"""From timestamps to figures: per-turn latencies, caption trail, stage split, traffic and cost.

Definitions (docs/performance.md repeats them):
- release: the moment the last frame of a turn was sent (the key release; `turn.end` follows at once).
- the turn's *tail segment*: the highest segment of the turn whose caption carries words in this
  listener's stream. Its latencies are what a listener waits for after the speaker stops talking,
  measured from the end of speech: the send time of the tail segment's last frame, which is the
  release unless a pause flag closed the segment a few frames before it.
- first caption: first caption (interim or final) of the tail segment with a non-empty `original`.
- first translated caption: first final caption of the tail segment in the listener's language
  with `translated: true`.
- first audio: first `audio` message of the tail segment.
- caption trail: for every segment closed while the speaker is still talking (3 s cut, pause or
  silence flag), the first caption with words minus the send time of the segment's last frame.
  Segment boundaries come from replaying the server's own segmenter on what the turn sent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .driver import Participant, Turn


def pct(values: Iterable[float], q: float) -> float | None:
    """Percentile with linear interpolation (numpy's default), None when there is nothing to rank."""
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "p50": _r(pct(values, 50)), "p95": _r(pct(values, 95)),
            "max": _r(max(values) if values else None), "mean": _r(sum(values) / len(values) if values else None)}


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


@dataclass
class TurnResult:
    """One turn as one listener experienced it (seconds after release unless named otherwise)."""

    turn: Turn
    listener: str
    language: str
    segments: int
    tail: int | None
    first_caption: float | None
    first_translated: float | None
    first_audio: float | None
    last_audio: float | None
    audio_seconds: float
    trails: list[float]
    trails_translated: list[float]
    failed_notes: list[str]
    end_wall: float = 0.0  # wall clock of the end of speech the latencies are measured from
    speaking_off: float | None = None  # release → `speaking: false` at this listener (the event path's lag)

    def row(self) -> dict[str, Any]:
        t = self.turn
        return {"turn": t.turn, "room": t.room, "clip": t.clip, "voice": t.voice, "sourceLanguage": t.language,
                "listenerLanguage": self.language, "whole": t.whole, "seconds": round(t.seconds, 2),
                "release_s": round(t.t_release, 3), "segments": self.segments, "tail": self.tail,
                "first_caption_s": _r(self.first_caption), "first_translated_caption_s": _r(self.first_translated),
                "first_audio_s": _r(self.first_audio), "last_audio_s": _r(self.last_audio),
                "speaking_off_s": _r(self.speaking_off),
                "audio_seconds": round(self.audio_seconds, 2), "trails_s": [_r(x) for x in self.trails],
                "cuts": [[g.index, g.reason, g.first_seq, g.last_seq] for g in t.segments],
                "silences": len(t.silences),
                "notes": sorted(set(self.failed_notes))}


def turn_result(turn: Turn, listener: Participant) -> TurnResult:
    caps = [c for c in listener.captions if c.turn == turn.turn and c.user == turn.user]
    auds = [a for a in listener.audio if a.turn == turn.turn and a.user == turn.user]
    worded = [c for c in caps if c.original.strip()]
    segs = {c.segment for c in caps} | {a.segment for a in auds}
    tail = max((c.segment for c in worded), default=None)
    cut = next((g for g in turn.segments if g.index == tail), None)
    # end of speech: the last frame of the tail segment (the release itself unless a pause closed it first)
    rel = turn.frame_times[min(cut.last_seq, len(turn.frame_times) - 1)] if cut else turn.t_release

    def first(xs: Iterable[float]) -> float | None:
        xs = list(xs)
        return min(xs) - rel if xs else None

    fc = first(c.t for c in worded if c.segment == tail)
    ft = first(c.t for c in caps if c.segment == tail and c.final and c.translated and c.language == listener.language)
    fa = first(a.t for a in auds if a.segment == tail)
    la = first(a.t for a in auds if a.segment == tail and a.last)
    trails, trails_tr = [], []
    n = len(turn.frame_times)
    for seg in turn.segments:
        if seg.reason in ("end", "switch") or seg.last_seq >= n - 1:  # closed by the release, not while talking
            continue
        sent = turn.frame_times[seg.last_seq]
        worded_seg = [c.t for c in worded if c.segment == seg.index]
        if worded_seg:
            trails.append(min(worded_seg) - sent)
        tr = [c.t for c in caps
              if c.segment == seg.index and c.final and c.translated and c.language == listener.language]
        if tr:
            trails_tr.append(min(tr) - sent)
    notes = [c.note for c in caps if c.note] + [
        code for _, user, tid, _, code in listener.notices if tid == turn.turn and user == turn.user]
    offs = [t for t, u, tid, active in listener.speaking if u == turn.user and tid == turn.turn and not active]
    off = min(offs) - turn.t_release if offs else None
    return TurnResult(turn, listener.name, listener.language, len(segs), tail, fc, ft, fa, la,
                      sum(a.seconds for a in auds), trails, trails_tr, notes,
                      turn.wall_release - (turn.t_release - rel), off)


def latency_block(results: list[TurnResult]) -> dict[str, Any]:
    fc = [r.first_caption for r in results if r.first_caption is not None]
    ft = [r.first_translated for r in results if r.first_translated is not None]
    fa = [r.first_audio for r in results if r.first_audio is not None]
    la = [r.last_audio for r in results if r.last_audio is not None]
    return {"observations": len(results), "first_caption_s": summary(fc), "first_translated_caption_s": summary(ft),
            "first_audio_s": summary(fa), "last_audio_s": summary(la),
            "missing": {"caption": len(results) - len(fc), "translated_caption": len(results) - len(ft),
                        "audio": len(results) - len(fa)}}


def stage_split(results: list[TurnResult], usage: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Where the time after release goes, as far as the wire (and the usage records) show it.

    Client view: release → source caption (segment close + hand-off + ASR), source caption → first
    audio (MT + TTS of the first 200 ms chunk + fan-out). Server view (usage records in Blob): release →
    translator start, → source text, → translated text, → first audio chunk ready, → at the listener.
    """
    client: dict[str, list[float]] = defaultdict(list)
    server: dict[str, list[float]] = defaultdict(list)
    coarse: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r.first_caption is not None:
            client["release_to_source_caption"].append(r.first_caption)
            if r.first_audio is not None:
                client["source_caption_to_first_audio"].append(r.first_audio - r.first_caption)
        if r.first_audio is not None and r.first_translated is not None:
            client["first_audio_to_translated_caption"].append(r.first_translated - r.first_audio)
        if r.speaking_off is not None:  # turn.end → function → room broadcast: how far behind the event path runs
            client["release_to_speaking_off"].append(r.speaking_off)
        rec = (usage or {}).get(f"{r.turn.user}:{r.turn.turn}:{r.tail}") if r.tail is not None else None
        if not rec or r.first_audio is None:
            continue
        timings = rec.get("timings", {})
        start = rec["end_wall"] - timings.get("total", 0.0)
        t_start = start - r.end_wall
        src = timings.get("source_text")
        text = timings.get(f"text_{r.language}")
        audio = timings.get(f"audio_{r.language}")
        if src is None or audio is None:
            continue
        server["handoff"].append(max(0.0, t_start))  # entity close, blob commit, queue poll, marker/blob/state reads
        if "committed_wall" in rec and "claimed_wall" in rec:  # whole seconds: a coarse split of the hand-off
            coarse["speech_end_to_segment_committed"].append(rec["committed_wall"] - r.end_wall)
            coarse["committed_to_claimed_by_translator"].append(rec["claimed_wall"] - rec["committed_wall"])
        server["asr"].append(src)  # realtime session open + recognition of the segment
        if text is not None and text >= src:
            server["mt"].append(text - src)
            server["tts_first_chunk"].append(max(0.0, audio - text))
            server[f"tts_first_chunk_{r.language}"].append(max(0.0, audio - text))
        else:
            server["mt_tts_first_chunk"].append(max(0.0, audio - src))
        server["fanout"].append(max(0.0, r.first_audio - (t_start + audio)))
    return {"client_p50_s": {k: _r(pct(v, 50)) for k, v in client.items()},
            "client_p95_s": {k: _r(pct(v, 95)) for k, v in client.items()},
            "server_p50_s": {k: _r(pct(v, 50)) for k, v in server.items()},
            "server_p95_s": {k: _r(pct(v, 95)) for k, v in server.items()},
            "server_observations": len(server.get("asr", [])),
            "handoff_coarse_1s_p50_s": {k: _r(pct(v, 50)) for k, v in coarse.items()},
            "handoff_coarse_1s_p95_s": {k: _r(pct(v, 95)) for k, v in coarse.items()}}


# --------------------------------------------------------------------------------------------- cost

# Public list prices in USD, read 2026-11-25 (sources in docs/performance.md §Prices). They change.
PRICES: dict[str, Any] = {
    "read_on": "2026-11-25",
    "webpubsub_standard_unit_day": 1.61,  # Standard_S1, 1,000 connections + 1M messages/day included
    "webpubsub_included_messages_per_unit_day": 1_000_000,
    "webpubsub_overage_per_million": 1.00,
    "flex_gb_second": 0.000026,  # Flex Consumption on demand, execution time
    "flex_per_million_executions": 0.40,
    "flex_instance_gb": 2.048,  # our instance memory size (infra/bicep)
    "realtime_audio_in_per_million": 32.0,  # gpt-realtime family, audio tokens
    "realtime_audio_out_per_million": 64.0,
    "realtime_text_in_per_million": 4.0,
    "realtime_text_out_per_million": 16.0,
    "realtime_audio_in_tokens_per_second": 10,  # 1 token per 100 ms of user audio
    "realtime_audio_out_tokens_per_second": 20,  # 1 token per 50 ms of assistant audio
    "input_transcription_per_minute": 0.006,  # whisper-1 class input transcription
    "instruction_tokens_per_session": 150,
    "blob_write_per_10k": 0.065,  # Hot LRS, write operations
    "blob_read_per_10k": 0.005,
    "queue_op_per_10k": 0.004,
}


def model_sessions(*, segments_per_min: float, targets: int, segment_s: float) -> dict[str, Any]:
    """Model work per segment and per speaker-minute, before and after one transcription per segment.

    before: one realtime session per target language, each hearing the audio (realtime audio
    input) and transcribing it. after: one transcription-only session hears the audio (input
    transcription, no response, so no realtime audio tokens), then one text-in session per
    target language turns the transcript into translated text and speech.
    """
    before = {"sessions": targets, "transcription_sessions": 0, "realtime_sessions": targets,
              "audio_heard_s": round(targets * segment_s, 2), "transcriptions": targets,
              "realtime_audio_in_s": round(targets * segment_s, 2)}
    after = {"sessions": targets + 1, "transcription_sessions": 1, "realtime_sessions": targets,
             "audio_heard_s": round(segment_s, 2), "transcriptions": 1, "realtime_audio_in_s": 0.0}
    per_min = {k: {n: round(v * segments_per_min, 1) for n, v in d.items()} for k, d in
               (("before", before), ("after", after))}
    return {"per_segment": {"before": before, "after": after}, "per_speaker_minute": per_min,
            "segment_s": round(segment_s, 2), "targets": targets}


def cost_model(*, upstream_units_per_min: float, speaker_in_units_per_min: float, listener_units_per_min: float,
               events_per_min: float, segments_per_min: float, output_audio_s_per_min: float,
               text_chars_per_min: float, listeners: int = 3, targets: int = 2,
               speakers_per_instance: float = 1.0, transcribe_once: bool = True,
               prices: dict[str, Any] = PRICES) -> dict[str, Any]:
    """$ per speaker-minute for one speaker, `listeners` listeners, `targets` target languages.

    Web PubSub is priced at the higher of the overage rate and the rate a Standard unit-day buys
    (unit price / included messages): a room that uses the service pays one or the other per message.
    Flex: while a speaker talks the instance is always executing (10 events/s), so a minute of
    speech keeps `1/speakers_per_instance` instances busy for 60 s. Storage: per frame one entity
    signal (queue put/get/delete) and per segment ~6 blob writes, 3 reads, 3 queue operations.
    Models: `transcribe_once` (the translator today) bills one input transcription and, per
    language, a text-in session (instructions + the transcript as text input); False prices the
    earlier design, one audio-in session per language that also transcribes (the `before` figures).
    """
    p = prices
    wps_price = max(p["webpubsub_overage_per_million"],
                    p["webpubsub_standard_unit_day"] / p["webpubsub_included_messages_per_unit_day"] * 1e6) / 1e6
    units = upstream_units_per_min + speaker_in_units_per_min + listeners * listener_units_per_min
    wps = units * wps_price
    gb_s = 60.0 * p["flex_instance_gb"] / speakers_per_instance
    executions = events_per_min * 2 + segments_per_min  # event handler + entity batch (upper bound) + translator
    flex = gb_s * p["flex_gb_second"] + executions * p["flex_per_million_executions"] / 1e6
    sessions = segments_per_min * targets  # realtime (GPT) sessions, one per segment and language
    audio_out = output_audio_s_per_min * p["realtime_audio_out_tokens_per_second"] * targets
    text_out = text_chars_per_min / 4 * targets
    if transcribe_once:
        audio_in = 0.0  # only the transcription session hears the audio, and it creates no response
        text_in = sessions * p["instruction_tokens_per_session"] + text_chars_per_min / 4 * targets
        transcription = p["input_transcription_per_minute"]
    else:
        audio_in = 60 * p["realtime_audio_in_tokens_per_second"] * targets
        text_in = sessions * p["instruction_tokens_per_session"]
        transcription = p["input_transcription_per_minute"] * targets  # each per-language session transcribes
    openai = (audio_in * p["realtime_audio_in_per_million"] + audio_out * p["realtime_audio_out_per_million"]
              + text_in * p["realtime_text_in_per_million"] + text_out * p["realtime_text_out_per_million"]) / 1e6
    frames = events_per_min
    storage = (frames * 3 * p["queue_op_per_10k"] + segments_per_min * (6 * p["blob_write_per_10k"]
               + 3 * p["blob_read_per_10k"] + 3 * p["queue_op_per_10k"])) / 1e4
    total = wps + flex + openai + transcription + storage
    out = {"usd_per_speaker_minute": round(total, 5),
           "breakdown_usd": {"webpubsub": round(wps, 5), "functions_flex": round(flex, 5),
                             "realtime_tokens": round(openai, 5), "input_transcription": round(transcription, 5),
                             "storage_ops": round(storage, 6)},
           "quantities_per_speaker_minute": {
               "webpubsub_billed_units": round(units), "flex_gb_s": round(gb_s, 1),
               "flex_executions": round(executions), "realtime_sessions": round(sessions, 1),
               "transcription_sessions": round(segments_per_min if transcribe_once else 0.0, 1),
               "audio_in_tokens": round(audio_in), "audio_out_tokens": round(audio_out),
               "text_in_tokens": round(text_in), "text_out_tokens": round(text_out)},
           "assumptions": {"listeners": listeners, "target_languages": targets,
                           "speakers_per_instance": speakers_per_instance, "transcribe_once": transcribe_once,
                           "webpubsub_usd_per_million_units": round(wps_price * 1e6, 3)}}
    if transcribe_once and segments_per_min > 0:
        before = cost_model(upstream_units_per_min=upstream_units_per_min,
                            speaker_in_units_per_min=speaker_in_units_per_min,
                            listener_units_per_min=listener_units_per_min, events_per_min=events_per_min,
                            segments_per_min=segments_per_min, output_audio_s_per_min=output_audio_s_per_min,
                            text_chars_per_min=text_chars_per_min, listeners=listeners, targets=targets,
                            speakers_per_instance=speakers_per_instance, transcribe_once=False, prices=prices)
        out["before_transcribe_once_usd_per_speaker_minute"] = before["usd_per_speaker_minute"]
        out["models"] = model_sessions(segments_per_min=segments_per_min, targets=targets,
                                       segment_s=60.0 / segments_per_min)
    return out
