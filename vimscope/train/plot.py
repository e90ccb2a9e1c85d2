"""The per-epoch metrics as a PNG of small line charts, drawn with Pillow (no plotting library is a dependency)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["plot_history"]

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
PANEL_W, PANEL_H, MARGIN = 420, 260, 44


def _series(history: list[dict], keys: list[str]) -> dict[str, list[tuple[float, float]]]:
    out = {}
    for key in keys:
        pts = [(float(h["epoch"]), float(h[key])) for h in history if isinstance(h.get(key), (int, float))]
        if pts:
            out[key] = pts
    return out


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, title: str, series: dict) -> None:
    draw.rectangle([x0, y0, x0 + PANEL_W - 1, y0 + PANEL_H - 1], outline=(200, 200, 200))
    draw.text((x0 + 8, y0 + 6), title, fill=(0, 0, 0))
    if not series:
        draw.text((x0 + 8, y0 + 30), "no data yet", fill=(120, 120, 120))
        return
    xs = [p[0] for pts in series.values() for p in pts]
    ys = [p[1] for pts in series.values() for p in pts]
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)
    if ymax - ymin < 1e-9:
        ymin, ymax = ymin - 0.5, ymax + 0.5
    if xmax == xmin:
        xmax = xmin + 1
    left, top = x0 + MARGIN, y0 + 28
    right, bottom = x0 + PANEL_W - 12, y0 + PANEL_H - 24
    draw.line([left, top, left, bottom, right, bottom], fill=(0, 0, 0))
    draw.text((x0 + 4, top - 4), f"{ymax:.3g}", fill=(0, 0, 0))
    draw.text((x0 + 4, bottom - 8), f"{ymin:.3g}", fill=(0, 0, 0))
    draw.text((left, bottom + 4), f"epoch {xmin:g}", fill=(0, 0, 0))
    draw.text((right - 60, bottom + 4), f"{xmax:g}", fill=(0, 0, 0))

    def to_px(x, y):
        return left + (x - xmin) / (xmax - xmin) * (right - left), bottom - (y - ymin) / (ymax - ymin) * (bottom - top)

    for i, (key, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        px = [to_px(x, y) for x, y in pts]
        if len(px) > 1:
            draw.line(px, fill=colour, width=2)
        for cx, cy in px:
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        draw.text((right - 150, top + 4 + 12 * i), key, fill=colour)


def plot_history(history: list[dict], path: str | Path) -> Path:
    """Loss (train) and validation scores per epoch; one panel each for losses, overlap scores, object scores."""
    path = Path(path)
    loss_keys = sorted({k for h in history for k in h if k.startswith("train_") and k != "train_grad_norm"})
    panels = [
        ("training loss", _series(history, loss_keys)),
        ("validation: Dice / IoU", _series(history, ["val_mean_dice", "val_mean_iou"])),
        ("validation: objects", _series(history, ["val_aji", "val_object_f1", "val_pq"])),
    ]
    image = Image.new("RGB", (PANEL_W * len(panels), PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for i, (title, series) in enumerate(panels):
        _panel(draw, i * PANEL_W, 0, title, series)
    tmp = path.with_name(path.name + ".partial")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path
