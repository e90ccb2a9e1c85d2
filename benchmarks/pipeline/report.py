"""The report of ``benchmarks.pipeline.throughput``: each end-to-end run's ratio to its ceiling, and the tables."""

from __future__ import annotations


def ratios(entry: dict, model_mpx: float | None) -> None:
    """Per end-to-end run: rate / min(model-alone, decode-alone of the decode path it used)."""
    for run in entry.get("end_to_end", {}).values():
        dec = entry.get("decode_alone", {}).get(run.get("decode"), {}).get("mpx_s")
        if run.get("mpx_s") and dec and model_mpx:
            bound = min(model_mpx, dec)
            run["ceiling_mpx_s"] = bound
            run["ratio"] = round(run["mpx_s"] / bound, 3)
            run["bound_by"] = "model" if model_mpx <= dec else "decode"
    e = entry.get("end_to_end", {})
    if e.get("gpu", {}).get("mpx_s") and e.get("cpu", {}).get("mpx_s"):
        entry["gpu_decode_gain"] = round(e["gpu"]["mpx_s"] / e["cpu"]["mpx_s"], 2)


def _f(v) -> str:
    return "-" if v is None else str(v)


def table(doc: dict) -> str:
    model = doc["model_alone"].get("default", {})
    lines = [
        f"model-alone: {model.get('model')} {model.get('tile')} px tiles, batch {model.get('batch')}, "
        f"{model.get('dtype')}: **{model.get('mpx_s')} Mpx/s** ({model.get('ms_per_batch')} ms/batch); "
        + ", ".join(
            f"{k} {v.get('mpx_s')} Mpx/s" for k, v in doc["model_alone"].items() if k != "default" and "mpx_s" in v
        ),
        "",
        "| slide | decode-alone reader / cpu-tiles / nvjpeg | host-alone | end-to-end cpu (ratio) | "
        "end-to-end gpu (ratio) | GPU decode gain | GPU busy cpu / gpu | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in doc["slides"].items():
        d = e.get("decode_alone", {})
        dec = " / ".join(_f(d.get(k, {}).get("mpx_s")) for k in ("reader", "cpu-tiles", "nvjpeg"))
        runs = e.get("end_to_end", {})

        def run_cell(k, runs=runs):
            r = runs.get(k, {})
            if "mpx_s" not in r:
                return "-"
            return f"{r['mpx_s']} ({r.get('ratio', '-')}, {r.get('decode')})"

        def busy(k, runs=runs):
            b = runs.get(k, {}).get("gpu_busy") or {}
            return "/".join(f"{v:.0%}" for v in b.values()) or "-"

        rss = max((r.get("peak_rss_mb") or 0) for r in runs.values()) if runs else None
        lines.append(
            f"| {name} ({e.get('megapixels')} Mpx) | {dec} | {_f(e.get('host_alone', {}).get('mpx_s'))} | "
            f"{run_cell('cpu')} | {run_cell('gpu')} | {_f(e.get('gpu_decode_gain'))} | {busy('cpu')} / {busy('gpu')} "
            f"| {rss} |"
        )
    lines += [
        "",
        "| slide | run | loop Mpx/s (ratio) | whole run Mpx/s | GPU busy | writer thread s: GPU wait / place / queue "
        "chunks / band wait | main thread s: model / waiting for the writer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in doc["slides"].items():
        for k, r in e.get("end_to_end", {}).items():
            if "mpx_s" not in r:
                continue
            loop = r.get("loop_s", {})
            writer = " / ".join(
                _f(loop.get(p)) for p in ("host_gpu_wait", "host_place", "host_write", "host_band_wait")
            )
            busy = "/".join(f"{v:.0%}" for v in (r.get("gpu_busy") or {}).values()) or "-"
            lines.append(
                f"| {name} | {k} ({r.get('decode')}) | {r['mpx_s']} ({r.get('ratio', '-')}) | {_f(r.get('run_mpx_s'))} "
                f"| {busy} | {writer} | {_f(loop.get('model'))} / {_f(loop.get('write_wait'))} |"
            )
    lines.append("")
    lines.append(
        "Rates in output Mpx/s (tile cores at the processing resolution); ratio = end-to-end / "
        "min(model-alone, decode-alone of the path the run used)."
    )
    return "\n".join(lines)
