"""The bench's picture: latency CDF per concurrency level, where the time goes, and the soak over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


def _cdf(ax: Any, xs: list[float], label: str, color: str, style: str = "-") -> None:
    xs = sorted(xs)
    if not xs:
        return
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=label, color=color, linestyle=style)


def plot(out: dict[str, Any], path: Path) -> None:
    results = out["results"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    ax = axes[0]
    for i, r in enumerate(results):
        rows = r["turn_rows"]
        c = COLORS[i % len(COLORS)]
        _cdf(ax, [x["first_audio_s"] for x in rows if not x["whole"] and x["first_audio_s"] is not None],
             f"{r['speakers']} speaker(s): first audio", c)
        _cdf(ax, [x["first_caption_s"] for x in rows if not x["whole"] and x["first_caption_s"] is not None],
             f"{r['speakers']}: first caption", c, ":")
        _cdf(ax, [x["first_audio_s"] for x in rows if x["whole"] and x["first_audio_s"] is not None],
             f"{r['speakers']}: baseline (whole turn) audio", c, "--")
    for x, lbl in ((0.8, "p50 target"), (1.2, "p95 target (1 spk)"), (1.5, "p95 target (4 spk)")):
        ax.axvline(x, color="grey", linewidth=0.8, linestyle="-.")
        ax.text(x, 0.02, lbl, rotation=90, fontsize=7, color="grey", va="bottom", transform=ax.get_xaxis_transform())
    ax.set_xlabel("seconds after the end of speech (key release)")
    ax.set_ylabel("fraction of turn × listener")
    ax.set_title("End of speech → listener (CDF over turns × listeners)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[1]
    names = ["handoff", "asr", "mt", "tts_first_chunk", "mt_tts_first_chunk", "fanout"]
    labels = {"handoff": "release → translator start (close, queue, reads)", "asr": "session + ASR",
              "mt": "MT", "tts_first_chunk": "TTS to first 200 ms chunk", "mt_tts_first_chunk": "MT + TTS",
              "fanout": "publish + fan-out → listener"}
    xs = [f"{r['speakers']} spk" for r in results] + [f"{r['speakers']} spk\nbaseline" for r in results[:1]]
    stages = [r["stages"].get("server_p50_s", {}) for r in results] + [
        r["baseline_stages"].get("server_p50_s", {}) for r in results[:1]]
    bottom = [0.0] * len(xs)
    if any(stages):
        for j, n in enumerate(names):
            vals = [s.get(n) or 0.0 for s in stages]
            if not any(vals):
                continue
            ax.bar(xs, vals, bottom=bottom, label=labels[n], color=COLORS[j % len(COLORS)] if j < 5 else "#8c564b")
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_title("Where the time goes (p50 of each stage, tail segment)")
    else:  # no usage records (--url without --storage): the client-side split
        cl = [r["stages"].get("client_p50_s", {}) for r in results]
        xs = xs[: len(results)]
        bottom = [0.0] * len(xs)
        for j, n in enumerate(["release_to_source_caption", "source_caption_to_first_audio"]):
            vals = [s.get(n) or 0.0 for s in cl]
            ax.bar(xs, vals, bottom=bottom, label=n.replace("_", " "), color=COLORS[j])
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_title("Where the time goes (client view, p50)")
    ax.axhline(0.8, color="grey", linestyle="-.", linewidth=0.8)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")

    ax = axes[2]
    soak = results[-1]
    rows = [x for x in soak["turn_rows"] if x["first_audio_s"] is not None]
    if rows:
        t0 = min(x["release_s"] for x in rows)
        for whole, c, lbl in ((False, COLORS[0], "streaming"), (True, COLORS[1], "baseline")):
            pts = [(x["release_s"] - t0, x["first_audio_s"]) for x in rows if x["whole"] == whole]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, color=c, label=lbl, alpha=0.7)
        tl = soak.get("resources", {}).get("timeline") or []
        if tl and "t0_s" in soak:
            ax2 = ax.twinx()
            off = soak["t0_s"] - t0  # the sampler's clock starts with the level, the scatter with its first turn
            ax2.fill_between([x[0] + off for x in tl], [x[2] for x in tl], color="grey", alpha=0.2, step="mid",
                             label="CPU of other processes on the machine")
            ax2.plot([x[0] + off for x in tl], [x[1] for x in tl], color="grey", linewidth=0.7,
                     label="CPU of the stack")
            ax2.set_ylabel("CPU % (200 = both cores)")
            ax2.set_ylim(0, 400)
            ax2.legend(fontsize=7, loc="upper right")
    ax.set_title(f"{soak['speakers']} speakers over {soak['duration_s']:.0f} s: first audio per turn")
    ax.set_xlabel("seconds into the run (end of speech)")
    ax.set_ylabel("end of speech → first audio, s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    m = out["machine"]
    fig.suptitle(f"babelroom bench — {m['nproc']} × {m['cpu_model']}, {m['ram_gb']} GB, {m['date_utc']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(out: dict[str, Any]) -> str:
    """The summary table for docs/performance.md, from a bench JSON."""
    cols = [("speakers", "speakers"), ("turns", "turns"), ("first_caption_p50_s", "caption p50"),
            ("first_translated_caption_p50_s", "translated caption p50"), ("first_audio_p50_s", "audio p50"),
            ("first_audio_p95_s", "audio p95"), ("first_audio_max_s", "audio max"),
            ("baseline_first_audio_p50_s", "baseline audio p50"), ("baseline_ratio", "baseline / streaming"),
            ("caption_trail_p50_s", "trail p50"), ("caption_trail_p95_s", "trail p95"),
            ("first_audio_p50_first_half_s", "audio p50 1st half"),
            ("first_audio_p50_second_half_s", "audio p50 2nd half"),
            ("wps_units_per_listener_minute", "WPS units / listener-min"),
            ("usd_per_speaker_minute", "$ / speaker-min"),
            ("usd_per_speaker_minute_before_transcribe_once", "$ / speaker-min, one transcription per language"),
            ("model_sessions_per_segment", "model sessions / segment"),
            ("transcriptions_per_segment", "transcriptions / segment"), ("rss_mb_max", "stack RSS MB"),
            ("cpu_stack_mean_pct", "stack CPU % (200 = 2 cores)"),
            ("cpu_other_processes_mean_pct", "other processes' CPU %")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in out["results"]:
        lines.append("| " + " | ".join("–" if r.get(k) is None else str(r.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
