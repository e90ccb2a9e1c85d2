"""tune_scan's report: the proposed ``config.TUNED`` table (each entry cut to the keys that matter) and the
summary table against the scan's bound and the official kernels."""

from __future__ import annotations

import torch

from benchmarks.kernels.tune_shape import DTYPES, E, bounds


def proposed_table(results: list[dict], arch: str, device: str) -> dict:
    """bucket -> launch keys of the best configuration, for shapes whose best beat the default by > 2% (fwd+bwd or
    fwd); each entry is cut to the keys that change what it resolves to."""
    from vimscope_kernels.common.config import _pow2_at_least

    table = {}
    for r in results:
        best, d = r.get("best"), r.get("default")
        if not best or not best.get("ok") or not d:
            continue
        if best["fwd_bwd_ms"] > 0.98 * d["fwd_bwd_ms"] and best["fwd_ms"] > 0.98 * d["fwd_ms"]:
            continue
        key = (arch, r["dtype"], _pow2_at_least(E), _pow2_at_least(r["L"]), _pow2_at_least(r["B"]))
        table[repr(key)] = minimal_launch(best["launch"], r, device)
    return table


def minimal_launch(launch: dict, r: dict, device: str) -> dict:
    """Drop keys one by one while the launch still resolves to the same configuration at this shape."""
    from vimscope_kernels.common import config

    def resolve(lz):
        cfg = config.scan_config(r["B"], r["L"], E, torch.device(device), dtype=DTYPES[r["dtype"]], **lz)
        return {k: cfg[k] for k in config.LAUNCH_KEYS if k in cfg}

    target, out = resolve(launch), dict(launch)
    for k in list(out):
        trial = {j: v for j, v in out.items() if j != k}
        if resolve(trial) == target:
            out = trial
    return out


def table_source(table: dict) -> str:
    lines = ["TUNED: dict[tuple[str, str, int, int, int], dict] = {"]
    for key, launch in table.items():
        lines.append(f"    {key}: {launch!r},")
    return "\n".join(lines + ["}"])


def summary_lines(results: list[dict], rates: dict) -> list[str]:
    from benchmarks.kernels.scan import OFFICIAL_COPY_TBPS, OFFICIAL_MS  # noqa: F401

    out = ["| L | B | dtype | default fwd / bwd / fwd+bwd ms | best fwd / bwd / fwd+bwd ms | fwd+bwd x | "
           "fwd / bound | fwd+bwd / bound | vs 2x official + flips (fwd / fwd+bwd) |", "|---" * 9 + "|"]  # fmt: skip
    for r in results:
        d, b = r.get("default"), r.get("best") or r.get("default")
        if not d:
            continue
        bd = bounds(r["L"], r["B"], r["dtype"], rates)
        off = OFFICIAL_MS.get((r["L"], r["B"]), {}).get(r["dtype"])
        vs = ""
        if off:
            size = torch.finfo(DTYPES[r["dtype"]]).bits // 8
            flip = 2 * 3 * r["B"] * r["L"] * E * size / rates["copy_Bps"] * 1e3
            vs = f"{(2 * off[0] + flip) / b['fwd_ms']:.2f}x / {(2 * off[1] + 2 * flip) / b['fwd_bwd_ms']:.2f}x"
        out.append(
            f"| {r['L']} | {r['B']} | {r['dtype']} | {d['fwd_ms']:.3f} / {d['bwd_ms']:.3f} / {d['fwd_bwd_ms']:.3f} "
            f"| {b['fwd_ms']:.3f} / {b['bwd_ms']:.3f} / {b['fwd_bwd_ms']:.3f} "
            f"| {d['fwd_bwd_ms'] / b['fwd_bwd_ms']:.2f} "
            f"| {b['fwd_ms'] / bd['fwd']['ms']:.1f} | {b['fwd_bwd_ms'] / bd['fwd_bwd']['ms']:.1f} | {vs} |"
        )
    return out
