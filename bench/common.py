"""Shared pieces of the benchmarks: models (real ones from ../shared when present) and timing."""
from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))

from adain_nodes.host.paths import DEFAULT_DECODER, DEFAULT_ENCODER, PACK_WEIGHTS, RELU4_1_DECODER  # noqa: E402
from adain_nodes.models.loaded import LoadedModel  # noqa: E402
from adain_nodes.models.networks import AdaINDecoder, SkipDecoder, VGGEncoder  # noqa: E402
from adain_nodes.models.weights import load_decoder, load_encoder  # noqa: E402


def models(decoder_file: str = RELU4_1_DECODER) -> tuple[LoadedModel[VGGEncoder], LoadedModel, str]:
    """The encoder and the pack's decoder ``decoder_file`` (weights/), or random ones of its kind."""
    shared = SHARED / "weights"
    if (shared / DEFAULT_ENCODER).exists():
        return (load_encoder(shared / DEFAULT_ENCODER), load_decoder(PACK_WEIGHTS / decoder_file),
                "real weights (../shared encoder, the pack's decoder)")
    decoder = SkipDecoder() if decoder_file == DEFAULT_DECODER else AdaINDecoder()
    return (LoadedModel(VGGEncoder().eval(), "random", "random"),
            LoadedModel(decoder.eval(), "random", "random"), "random weights (../shared absent)")


def plain_stylize(encoder: torch.nn.Sequential, decoder: torch.nn.Sequential, content: torch.Tensor,
                  style: torch.Tensor) -> torch.Tensor:
    """The reference port's test-time procedure: plain fp32 NCHW modules under no_grad."""
    with torch.no_grad():
        c, s = encoder(content), encoder(style)
        cm, cs = c.mean((2, 3), keepdim=True), (c.flatten(2).var(2) + 1e-5).sqrt()[..., None, None]
        sm, ss = s.mean((2, 3), keepdim=True), (s.flatten(2).var(2) + 1e-5).sqrt()[..., None, None]
        return decoder((c - cm) / cs * ss + sm).clamp(0, 1)


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in 0..1 (infinite when equal)."""
    mse = float(((reference.float().cpu() - other.float().cpu()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def header(device: torch.device, which: str) -> str:
    return f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, {which}"
