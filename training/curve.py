"""The trade-off curve: a decoder's style against structure over a sweep of alpha, beside a peer's point.

One operating point says little: lowering alpha buys structure (SSIM) with style, so a decoder is
better than a peer when its curve of "style loss lowered" against SSIM lies above the peer's point.
``sweep`` scores a decoder from alpha 1 down in steps until its SSIM passes a given one (the peer's),
optionally with the content's detail layer added (``pipeline.with_content_detail``) at one or more
strengths, each its own curve; ``plot_curves`` draws them (PIL: the pack has no plotting library).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from adain_nodes import pipeline
from adain_nodes.host.runtime import Runtime, StandaloneRuntime
from adain_nodes.models.loaded import LoadedModel
from adain_nodes.models.networks import VGGEncoder
from adain_nodes.models.weights import load_decoder

from .evaluate import Score, Tally, pair_targets, thumbnail
from .monitor import save_png

log = logging.getLogger(__name__)

ALPHA_STEP = 0.1
MIN_ALPHA = 0.3
ALPHAS_PER_PASS = 2  # each pass encodes every pair once and decodes it at this many alphas


def alpha_grid(step: float = ALPHA_STEP, lowest: float = MIN_ALPHA) -> list[float]:
    """1.0, 1.0 - step, ... down to ``lowest`` (rounded to hundredths, so 0.7 is 0.7)."""
    count = int(round((1.0 - lowest) / step)) + 1
    return [round(1.0 - k * step, 2) for k in range(count)]


@dataclass
class Curve:
    """One method's points, alpha falling: ``scores[i]`` at ``alphas[i]``."""

    label: str
    detail: float
    alphas: list[float] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)

    def reduction_at(self, target_ssim: float) -> float | None:
        """The style loss lowered at ``target_ssim``, linear between the two neighbouring points that bracket it
        (None when the curve never reaches it)."""
        points = list(zip(self.scores, self.scores[1:]))
        for a, b in points:
            low, high = sorted((a.ssim, b.ssim))
            if low <= target_ssim <= high and high > low:
                t = (target_ssim - a.ssim) / (b.ssim - a.ssim)
                return a.style_reduction + t * (b.style_reduction - a.style_reduction)
        if len(self.scores) == 1 and self.scores[0].ssim == target_ssim:
            return self.scores[0].style_reduction
        return None

    def passing(self, target_ssim: float) -> int:
        """Index of the first point (highest alpha) whose SSIM reaches ``target_ssim``, else the last."""
        return next((i for i, s in enumerate(self.scores) if s.ssim >= target_ssim), len(self.scores) - 1)


def sweep_outputs(encoder: pipeline.Encoder, decoder: pipeline.Decoder, content: Tensor, style: Tensor,
                  runtime: Runtime, alphas: Sequence[float], details: Sequence[float], boost: float = 0.0,
                  refine: int = 0) -> Iterator[tuple[float, float, Tensor]]:
    """``(alpha, detail, image)`` for each alpha and detail strength: exactly ``pipeline.stylize(..., alpha,
    detail=detail, boost=boost, refine=refine)``, with the content and style encoded once and each alpha decoded
    once."""
    features = pipeline.encode(encoder, content, runtime, levels=decoder.network.levels)
    stats = pipeline.style_statistics(encoder, style, runtime)
    if boost > 0:
        stats = pipeline.boosted_style_for(encoder, decoder, features, stats, boost, runtime)
    if refine > 0:
        stats = pipeline.refined_style(encoder, decoder, content, stats, refine, runtime)
    for alpha in alphas:
        image = pipeline.decode(decoder, pipeline.blend(features, stats, alpha).without_content(), runtime)
        for detail in details:
            yield alpha, detail, pipeline.with_content_detail(image, content, detail)


def curve_label(decoder_file: str | os.PathLike, detail: float, boost: float = 0.0, refine: int = 0) -> str:
    stem = Path(decoder_file).stem + (f" + boost {boost:g}" if boost else "")
    stem += f" + refine {refine}" if refine else ""
    return f"{stem} + detail {detail:g}" if detail else stem


def sweep(decoder_file: str | os.PathLike, encoder: LoadedModel[VGGEncoder], pairs: list[tuple[Path, Path]],
          short_side: int, details: Sequence[float] = (0.0,), stop_ssim: float | None = None,
          alphas: Sequence[float] | None = None, thumb: int = 0, boost: float = 0.0, refine: int = 0
          ) -> tuple[list[Curve], dict[tuple[float, float], list[Image.Image]]]:
    """Score the decoder over ``alphas`` (default ``alpha_grid()``), falling, for each detail strength; a
    strength's curve stops once its SSIM reaches ``stop_ssim`` (all alphas are scored without it).
    With ``thumb`` also returns thumbnails of ``thumb`` px height per (detail, alpha), one per pair."""
    decoder, runtime = load_decoder(decoder_file), StandaloneRuntime(torch.device("cpu"))
    remaining = list(alphas if alphas is not None else alpha_grid())
    tallies: dict[tuple[float, float], Tally] = {}
    thumbs: dict[tuple[float, float], list[Image.Image]] = {}
    active = list(details)
    while remaining and active:
        chunk, remaining = remaining[:ALPHAS_PER_PASS], remaining[ALPHAS_PER_PASS:]
        for i, (content_path, style_path) in enumerate(pairs):
            if i % 8 == 0:
                log.info("%s at %d px, alpha %s: pair %d of %d", Path(decoder_file).stem, short_side, chunk, i + 1,
                         len(pairs))
            pair = pair_targets(encoder, i, content_path, style_path, short_side)
            with torch.inference_mode():
                for alpha, detail, output in sweep_outputs(encoder, decoder, pair.content, pair.style, runtime,
                                                           chunk, active, boost, refine):
                    key = (detail, alpha)
                    label = curve_label(decoder_file, detail, boost, refine)
                    tallies.setdefault(key, Tally(label)).add(encoder, pair, output)
                    if thumb:
                        thumbs.setdefault(key, []).append(thumbnail(output, thumb))
        for detail in list(active):
            ssims = [tallies[(detail, a)].score().ssim for a in chunk]
            log.info("%s at %d px, alpha %s: SSIM %s", curve_label(decoder_file, detail, boost, refine), short_side,
                     chunk,
                     ", ".join(f"{v:.3f}" for v in ssims))
            if stop_ssim is not None and max(ssims) >= stop_ssim:
                active.remove(detail)
    curves = []
    for detail in details:
        curve = Curve(curve_label(decoder_file, detail, boost, refine), detail)
        for (d, alpha), tally in sorted(tallies.items(), key=lambda kv: -kv[0][1]):
            if d == detail:
                curve.alphas.append(alpha)
                curve.scores.append(tally.score())
        curves.append(curve)
    return curves, thumbs


COLOURS = [(31, 119, 180), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207), (140, 86, 75)]
PEER_COLOUR = (214, 39, 40)


def plot_curves(curves: list[Curve], peer: Score | None, title: str, path: Path,
                size: tuple[int, int] = (900, 560)) -> None:
    """Style loss lowered (y) against SSIM to the content (x): each curve a line through its alphas, the
    peer a cross. Up and right is better."""
    points = [(s.ssim, s.style_reduction) for c in curves for s in c.scores]
    if peer is not None:
        points.append((peer.ssim, peer.style_reduction))
    width, height = size
    left, right, top, bottom = 70, 250, 40, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 12), title, fill="black")
    if not points:
        save_png(image, path)
        return
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    pad_x, pad_y = max((x1 - x0) * 0.08, 0.005), max((y1 - y0) * 0.08, 0.2)
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def xy(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for k in range(6):
        x, y = x0 + (x1 - x0) * k / 5, y0 + (y1 - y0) * k / 5
        px, _ = xy(x, y0)
        _, py = xy(x0, y)
        draw.line((px, top, px, height - bottom), fill=(230, 230, 230))
        draw.line((left, py, width - right, py), fill=(230, 230, 230))
        draw.text((px - 14, height - bottom + 6), f"{x:.3f}", fill="black")
        draw.text((8, py - 6), f"{y:.1f}x", fill="black")
    draw.text((left + (width - left - right) // 2 - 60, height - 22), "greyscale SSIM to the content", fill="black")
    draw.text((8, top - 16), "style loss lowered", fill="black")
    legend_y = top
    for n, curve in enumerate(curves):
        colour = COLOURS[n % len(COLOURS)]
        line = [xy(s.ssim, s.style_reduction) for s in curve.scores]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for (px, py), alpha in zip(line, curve.alphas):
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
            draw.text((px + 5, py - 12), f"{alpha:g}", fill=colour)
        draw.text((width - right + 10, legend_y), curve.label, fill=colour)
        legend_y += 16
    if peer is not None:
        px, py = xy(peer.ssim, peer.style_reduction)
        draw.line((px - 6, py - 6, px + 6, py + 6), fill=PEER_COLOUR, width=2)
        draw.line((px - 6, py + 6, px + 6, py - 6), fill=PEER_COLOUR, width=2)
        draw.text((width - right + 10, legend_y), peer.decoder, fill=PEER_COLOUR)
    draw.text((width - right + 10, height - bottom - 14), "labels: alpha", fill="black")
    save_png(image, path)
