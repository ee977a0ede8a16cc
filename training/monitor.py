"""What a person watches during training: progress line, loss log, sample grids, loss plot.

Every file is written through ``atomic_write`` (temporary file, then rename), so a kill at any
moment leaves the previous version readable. The plot is drawn with PIL to avoid matplotlib.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from adain_nodes.atomic_files import atomic_write

log = logging.getLogger(__name__)

LOG_FIELDS = ("iteration", "loss", "content_loss", "style_loss", "tv_loss", "colour_loss", "identity_pixel_loss",
              "identity_feature_loss", "stability_loss", "skip_content_loss", "teacher_loss", "lr", "images_per_s",
              "elapsed_s")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


class LossLog:
    """Loss records as JSONL and CSV; on resume, records past the checkpoint are dropped."""

    def __init__(self, run_dir: Path, resume_iteration: int | None = None) -> None:
        self.jsonl, self.csv = run_dir / "losses.jsonl", run_dir / "losses.csv"
        self.records: list[dict[str, Any]] = []
        if resume_iteration is not None and self.jsonl.is_file():
            for line in self.jsonl.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("iteration", math.inf) <= resume_iteration:
                    self.records.append(record)

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def flush(self) -> None:
        write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.records)
        write_text(self.csv, buffer.getvalue())


class Progress:
    """One status line: iteration, smoothed losses, images per second, ETA; a bar on terminals."""

    def __init__(self, total: int, start: int, live: bool | None = None, stream: TextIO | None = None) -> None:
        self.total, self.start = total, start
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.t0 = time.perf_counter()
        self.smooth: dict[str, float] = {}

    def rate(self, iteration: int, batch: int) -> float:
        elapsed = time.perf_counter() - self.t0
        return (iteration - self.start) * batch / elapsed if elapsed > 0 else 0.0

    def text(self, iteration: int, losses: dict[str, float], batch: int) -> str:
        for key, value in losses.items():  # exponential smoothing makes noisy batch losses readable
            self.smooth[key] = value if key not in self.smooth else 0.9 * self.smooth[key] + 0.1 * value
        images_per_s = self.rate(iteration, batch)
        remaining = (self.total - iteration) * batch / images_per_s if images_per_s > 0 else math.inf
        done = iteration / max(self.total, 1)
        bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
        loss_text = " ".join(f"{k} {v:.4g}" for k, v in self.smooth.items())
        return (f"[{bar}] {iteration}/{self.total} {loss_text} | {images_per_s:.2f} img/s "
                f"| ETA {format_seconds(remaining)}")

    def update(self, iteration: int, losses: dict[str, float], batch: int) -> None:
        line = self.text(iteration, losses, batch)
        if self.live:
            self.stream.write("\r" + line + "\033[K")
            self.stream.flush()
        else:
            log.info("%s", line)

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def to_pil(image: Tensor) -> Image.Image:
    """RGB ``[3, H, W]`` in 0..1 (clamped) as a PIL image."""
    array = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def sample_grid(content: Tensor, style: Tensor, output: Tensor, limit: int = 4, gap: int = 2) -> Image.Image:
    """Rows of content | style | output for the first ``limit`` items of a batch."""
    rows = [(c, s, o) for c, s, o in zip(content[:limit], style[:limit], output[:limit])]
    h, w = content.shape[-2:]
    grid = Image.new("RGB", (3 * w + 2 * gap, len(rows) * h + (len(rows) - 1) * gap), "white")
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            grid.paste(to_pil(image), (c * (w + gap), r * (h + gap)))
    return grid


def plot_losses(records: list[dict[str, Any]], path: Path, size: tuple[int, int] = (900, 500)) -> None:
    """Log-scale plot of total, content and weighted-free style loss against iteration."""
    series = {"loss": (40, 40, 40), "content_loss": (31, 119, 180), "style_loss": (214, 39, 40)}
    points = {k: [(r["iteration"], r[k]) for r in records if r.get(k, 0) > 0] for k in series}
    width, height = size
    left, right, top, bottom = 70, 20, 30, 45
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    all_points = [p for values in points.values() for p in values]
    if not all_points:
        draw.text((left, top), "no loss records yet", fill="black")
        save_png(image, path)
        return
    x0, x1 = min(p[0] for p in all_points), max(p[0] for p in all_points)
    y0, y1 = (math.log10(f(p[1] for p in all_points)) for f in (min, max))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def xy(it: float, value: float) -> tuple[float, float]:
        fx = (it - x0) / (x1 - x0)
        fy = (math.log10(value) - y0) / (y1 - y0)
        return left + fx * (width - left - right), height - bottom - fy * (height - top - bottom)

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for decade in range(math.floor(y0), math.ceil(y1) + 1):
        if y0 <= decade <= y1:
            _, y = xy(x0, 10.0 ** decade)
            draw.line((left, y, width - right, y), fill=(220, 220, 220))
            draw.text((5, y - 6), f"1e{decade}", fill="black")
    for i in range(5):
        it = x0 + (x1 - x0) * i / 4
        x, _ = xy(it, 10.0 ** y0)
        draw.text((x - 15, height - bottom + 8), f"{int(it)}", fill="black")
    draw.text((width // 2 - 30, height - 18), "iteration", fill="black")
    for n, (key, colour) in enumerate(series.items()):
        values = points[key]
        if len(values) > 1:
            draw.line([xy(*p) for p in values], fill=colour, width=2)
        draw.text((left + 10 + 130 * n, 8), key, fill=colour)
    save_png(image, path)
