"""The bench, quick: one speaker, one short clip (streamed, then as the whole-turn baseline) against the
session stack. It checks the JSON has every field with sane values; no timing thresholds, because a
test must not fail on a slow machine, while the bench must report how slow it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

REQUIRED = ("speakers", "first_caption_p50_s", "first_audio_p50_s", "first_audio_p95_s",
            "baseline_first_audio_p50_s", "caption_trail_p95_s", "wps_units_per_listener_minute",
            "usd_per_speaker_minute", "rss_mb_max")


def _ordered(block: dict[str, Any]) -> None:
    assert block["n"] > 0, block
    assert 0 <= block["p50"] <= block["p95"] <= block["max"], block


def test_quick_bench_writes_every_field_with_sane_values(stack: Any, tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "babelroom", "bench", "--quick", "--no-warmup", "--url", stack.url,
         "--storage", stack.settings["AzureWebJobsStorage"], "--json", str(out), "--png", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert png.stat().st_size > 10_000
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["ram_gb"] > 0
    (r,) = doc["results"]
    for key in REQUIRED:
        assert r.get(key) is not None, f"{key} missing: {json.dumps({k: r.get(k) for k in REQUIRED})}"
    assert r["speakers"] == 1 and r["turns"] == 1 and r["baseline_turns"] == 1
    assert not r["problems"]["failed_acks"] and not r["problems"]["closed"], r["problems"]
    lat = r["latency"]["streaming"]
    for key in ("first_caption_s", "first_translated_caption_s", "first_audio_s"):
        _ordered(lat[key])
    _ordered(r["latency"]["baseline"]["first_audio_s"])
    assert r["first_audio_p50_s"] == lat["first_audio_s"]["p50"]
    assert r["caption_trail_p95_s"] >= 0  # a segment is captioned only after its last frame was sent
    assert r["wps_units_per_listener_minute"] > 0 and r["wps_units_per_speaker_minute"] > 0
    assert r["usd_per_speaker_minute"] > 0 and r["cost"]["breakdown_usd"]["realtime_tokens"] > 0
    assert r["rss_mb_max"] > 0 and r["resources"]["processes"]["bench"]["rss_mb_max"] > 0
    rows = r["turn_rows"]
    assert {row["listenerLanguage"] for row in rows} == {"en", "pt"}
    assert all(row["audio_seconds"] > 0 for row in rows)
