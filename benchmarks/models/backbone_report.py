"""backbone's report: vim_tiny over DeiT-Tiny per size and the speed goals checked, the markdown table and the plot."""

from __future__ import annotations

from pathlib import Path

# Not measured here: hustvl/Vim's Vim-Tiny (mamba_ssm CUDA kernels) cannot be installed on the GPU machine.
OFFICIAL_QUOTED = [
    {"model": "vim_tiny_official", "size": 1248, "batch": 64, "images_per_s": 189.0, "source": "issue 5, H100"},
    {"model": "deit_tiny_flash", "size": 1248, "batch": 64, "images_per_s": 619.0, "source": "issue 5, H100"},
    {"model": "vim_tiny_official", "size": 2048, "batch": None, "images_per_s": 65.0, "source": "DESIGN.md, H100"},
    {"model": "deit_tiny_flash", "size": 2048, "batch": None, "images_per_s": 122.0, "source": "DESIGN.md, H100"},
]
VIM_GOALS = {1024: 1.0, 2048: 2.0, 4096: 6.0}  # the speed goals of vim_tiny over DeiT-Tiny flash per tile size
COMPARED = ("vim_tiny", "deit_tiny_flash", "deit_tiny_eager", "vim_ssd_tiny", "vim_tiny_chunked", "vim_tiny_split")


def ratios(rows: list[dict]) -> dict:
    """Per size: vim_tiny over DeiT speed and memory; the issue's goals checked where the rows exist."""
    ok = {(r["model"], r["size"]): r for r in rows if r.get("status") == "ok"}
    per_size, goals = {}, {}
    for size in sorted({r["size"] for r in rows}):
        vim, flash, eager, ssd, chunked, split = (ok.get((m, size)) for m in COMPARED)
        entry = {}
        if chunked and vim:
            entry["vim_over_chunked_path_speed"] = vim["images_per_s"] / chunked["images_per_s"]
        if split and vim:
            entry["split_conv_xproj_over_fused_speed"] = split["images_per_s"] / vim["images_per_s"]
        if ssd and flash:
            entry["vim_ssd_over_flash_speed"] = ssd["images_per_s"] / flash["images_per_s"]
            if "peak_gib" in ssd and "peak_gib" in flash:
                entry["vim_ssd_over_flash_peak_memory"] = ssd["peak_gib"] / flash["peak_gib"]
        if vim and flash:
            entry["vim_over_flash_speed"] = vim["images_per_s"] / flash["images_per_s"]
            if "peak_gib" in vim and "peak_gib" in flash:
                entry["vim_over_flash_peak_memory"] = vim["peak_gib"] / flash["peak_gib"]
        if vim and eager:
            entry["vim_over_eager_speed"] = vim["images_per_s"] / eager["images_per_s"]
        for q in OFFICIAL_QUOTED:
            if q["size"] == size and vim and q["model"] == "vim_tiny_official":
                entry["vim_over_official_quoted"] = vim["images_per_s"] / q["images_per_s"]
            if q["size"] == size and flash and q["model"] == "deit_tiny_flash":
                entry["deit_flash_measured_over_quoted"] = flash["images_per_s"] / q["images_per_s"]
        per_size[size] = entry
    for size, want in VIM_GOALS.items():  # vim_tiny over DeiT-Tiny flash, same run
        got = per_size.get(size, {}).get("vim_over_flash_speed")
        goals[f"vim_{want:g}x_deit_flash_at_{size}"] = got >= want if got is not None else None
    at1248 = per_size.get(1248, {}).get("vim_over_official_quoted")
    goals["3x_official_vim_at_1248 (quoted)"] = at1248 >= 3 if at1248 is not None else None
    mem = [e["vim_over_flash_peak_memory"] for e in per_size.values() if "vim_over_flash_peak_memory" in e]
    goals["peak_memory_not_above_deit_flash"] = max(mem) <= 1 if mem else None
    return {"per_size": per_size, "goals": goals}


def fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else ""


def markdown(rows: list[dict], summary: dict, layers: list[dict]) -> str:
    lines = ["| size | batch | model | images/s | ms/batch | peak GiB | vs DeiT-flash | status |", "|---" * 8 + "|"]
    for r in rows:
        ratio = ""
        if r["model"] != "deit_tiny_flash" and r.get("status") == "ok":
            flash = next((f for f in rows if f["model"] == "deit_tiny_flash" and f["size"] == r["size"]), {})
            if flash.get("status") == "ok":
                ratio = f"{r['images_per_s'] / flash['images_per_s']:.2f}x"
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['model']} | {fmt(r.get('images_per_s'), '.1f')} "
            f"| {fmt(r.get('ms_per_batch'), '.2f')} | {fmt(r.get('peak_gib'), '.2f')} | {ratio} | {r['status']} |"
        )
    lines += ["", "goals: " + ", ".join(f"{k}: {v}" for k, v in summary["goals"].items())]
    for q in OFFICIAL_QUOTED:
        lines.append(f"quoted, not measured: {q['model']} {q['size']} px: {q['images_per_s']} images/s ({q['source']})")
    for lb in layers:
        if "layer" not in lb:
            lines += ["", f"layer budget at {lb['size']} px: {lb.get('status')}"]
            continue
        one = lb["layer"]
        lines += [
            "",
            f"one Vim layer at {lb['size']} px, batch {lb['batch']} ({lb['tokens']} tokens): wall {one['wall_ms']:.3f} "
            f"ms, kernels {one['kernel_ms']:.3f} ms in {one['kernel_launches']:.0f} launches; whole forward "
            f"{lb['forward']['wall_ms']:.2f} ms",
            "| category | ms / layer | % |",
            "|---|---|---|",
        ]
        for c, v in one["categories"].items():
            if v["ms"] > 0:
                lines.append(f"| {c} | {v['ms']:.3f} | {v['pct']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, card: str, precision: str) -> None:
    """Two log-log panels against image size: images/s (vim_tiny over DeiT-flash written at each vim point, the
    quoted official numbers as crosses) and peak memory ("oom" at the top where a model ran out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_speed, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = sorted({r["size"] for r in rows})
    styles = {"vim_tiny": ("C0", "o"), "deit_tiny_flash": ("C1", "s"), "deit_tiny_eager": ("C2", "^"),
              "vim_ssd_tiny": ("C4", "D"), "vim_tiny_chunked": ("C5", "v"),
              "vim_tiny_split": ("C6", "^")}  # fmt: skip
    ok = {(r["model"], r["size"]): r for r in rows if r.get("status") == "ok"}
    for name, (color, marker) in styles.items():
        mine = [ok[name, s] for s in sizes if (name, s) in ok]
        if mine:
            xs = [r["size"] for r in mine]
            ax_speed.plot(xs, [r["images_per_s"] for r in mine], marker=marker, color=color, label=name)
            if all("peak_gib" in r for r in mine):
                ax_mem.plot(xs, [r["peak_gib"] for r in mine], marker=marker, color=color, label=name)
        for r in rows:
            if r["model"] == name and r.get("status") == "oom":  # at the top of the panel, in the model's colour
                ax_mem.annotate("oom", (r["size"], 0.97), xycoords=("data", "axes fraction"), color=color,
                                ha="center", va="top", fontsize=8)  # fmt: skip
    for s in sizes:
        if ("vim_tiny", s) in ok and ("deit_tiny_flash", s) in ok:
            vim = ok["vim_tiny", s]["images_per_s"]
            ax_speed.annotate(f"{vim / ok['deit_tiny_flash', s]['images_per_s']:.2f}x", (s, vim), fontsize=7,
                              color="C0", textcoords="offset points", xytext=(0, 6), ha="center")  # fmt: skip
    for model, color, text in (
        ("vim_tiny_official", "C3", "official Vim-Tiny"),
        ("deit_tiny_flash", "C1", "DeiT-flash"),
    ):
        quoted = [q for q in OFFICIAL_QUOTED if q["model"] == model and sizes and sizes[0] <= q["size"] <= sizes[-1]]
        if quoted:
            ax_speed.scatter([q["size"] for q in quoted], [q["images_per_s"] for q in quoted], marker="x",
                             color=color, label=f"{text} (quoted, other run)", zorder=3)  # fmt: skip
    if not ax_mem.lines:
        ax_mem.text(0.5, 0.5, "no GPU memory figures (CPU run)", transform=ax_mem.transAxes, ha="center")
    for ax, label in ((ax_speed, "images/s"), (ax_mem, "peak GPU memory (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("image size (px, square)")
        ax.set_ylabel(label)
        ax.set_xticks(sizes, [str(s) for s in sizes], rotation=45, fontsize=8)
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"vim_tiny (Triton scan) vs DeiT-Tiny, batch inference, {precision}, {card}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
