"""The batch report: counts, per-slide status and time, throughput, failures with their reasons.

Built from the state files (the truth on disk, whoever did the work) plus what this run did to each slide, and
written as ``report.json`` (for scripts) and ``report.md`` (for people), both atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path

from vimscope.runners.manifest import SlideJob
from vimscope.runners.state import STATUSES, StateStore, atomic_write_text
from vimscope.runners.task import Outcome


def build_report(store: StateStore, jobs: list[SlideJob], outcomes: dict[str, Outcome], run: dict) -> dict:
    slides, failures = [], []
    counts = dict.fromkeys(STATUSES, 0)
    this_run: dict[str, int] = {}
    processed_pixels = 0.0
    processed_seconds = []
    for job in jobs:
        state = store.load(job.name)
        status = state.status if state else "pending"
        counts[status] = counts.get(status, 0) + 1
        outcome = outcomes.get(job.name)
        did = outcome.status if outcome else "not run"
        this_run[did] = this_run.get(did, 0) + 1
        seconds = state.seconds if state else None
        entry = {
            "name": job.name,
            "slide": job.path,
            "status": status,
            "this_run": did,
            "seconds": seconds,
            "attempts": len(state.attempts) if state else 0,
            "done_count": state.done_count if state else 0,
            "error": state.error if state and status == "failed" else None,
            "outputs": state.outputs if state else {},
        }
        if outcome and outcome.status == "skipped":
            entry["note"] = outcome.reason
        slides.append(entry)
        if status == "failed":
            failures.append({"name": job.name, "slide": job.path, "error": entry["error"], "type": state.error_type})
        if did == "done" and state is not None:
            processed_pixels += _megapixels(state.summary)
            if seconds:
                processed_seconds.append(seconds)
    wall = max(run.get("seconds") or 0.0, 1e-9)
    done_now = this_run.get("done", 0)
    return {
        "run": run,
        "counts": {**counts, "total": len(jobs)},
        "this_run": this_run,
        "throughput": {
            "slides_done": done_now,
            "slides_per_hour": round(done_now / wall * 3600, 2),
            "megapixels": round(processed_pixels, 3),
            "megapixels_per_s": round(processed_pixels / wall, 3),
            "median_slide_seconds": round(statistics.median(processed_seconds), 3) if processed_seconds else None,
        },
        "failures": failures,
        "slides": slides,
    }


def write_report(out_root: str | Path, report: dict) -> tuple[Path, Path]:
    out_root = Path(out_root)
    json_path, md_path = out_root / "report.json", out_root / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path


def render_markdown(report: dict) -> str:
    run, counts, tp = report["run"], report["counts"], report["throughput"]
    lines = [
        "# vimscope batch report",
        "",
        f"- run `{run.get('run_id')}`, {_when(run.get('started'))} to {_when(run.get('finished'))} "
        f"({_secs(run.get('seconds'))}){' — interrupted' if run.get('interrupted') else ''}",
        f"- input: `{run.get('input')}`; output: `{run.get('output')}`",
        f"- execution: {run.get('execution')}",
        f"- vimscope {run.get('vimscope')}",
        "",
        "| total | done | failed | pending | running |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {counts['total']} | {counts['done']} | {counts['failed']} | {counts['pending']} | {counts['running']} |",
        "",
        "This run: " + ", ".join(f"{n} {k}" for k, n in sorted(report["this_run"].items())) + ".",
        "",
        f"Throughput: {tp['slides_done']} slide(s) in {_secs(run.get('seconds'))}, "
        f"{tp['slides_per_hour']} slides/hour, "
        f"{tp['megapixels_per_s']} megapixels/s; median {_secs(tp['median_slide_seconds'])} per slide.",
        "",
    ]
    if report["failures"]:
        lines += ["## Failures", "", "| slide | reason |", "| --- | --- |"]
        lines += [f"| `{f['name']}` | {_cell(f['error'])} |" for f in report["failures"]]
        lines.append("")
    lines += ["## Slides", "", "| slide | status | this run | time | attempts |", "| --- | --- | --- | ---: | ---: |"]
    for s in report["slides"]:
        lines.append(f"| `{s['name']}` | {s['status']} | {s['this_run']} | {_secs(s['seconds'])} | {s['attempts']} |")
    return "\n".join(lines) + "\n"


def _megapixels(summary: dict) -> float:
    """Output megapixels of a slide from the pipeline's summary, whatever spelling it uses."""
    for key in ("megapixels", "mpx"):
        if isinstance(summary.get(key), (int, float)):
            return float(summary[key])
    if isinstance(summary.get("pixels"), (int, float)):
        return summary["pixels"] / 1e6
    shape = summary.get("out_shape")
    if isinstance(shape, (list, tuple)) and len(shape) >= 2:
        return shape[0] * shape[1] / 1e6
    return 0.0


def _when(t) -> str:
    return dt.datetime.fromtimestamp(t).isoformat(timespec="seconds") if t else "?"


def _secs(s) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")
