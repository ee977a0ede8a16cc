"""Speed of the pack next to a plain fp32 NCHW run of the same network, measured in the same process.

    python bench/bench_inference.py [--sizes 256 512 1024] [--repeats 3] [--frames 8]
                                    [--precision-sizes 256 512 1024 2048] [--photo-pairs 3]
                                    [--only speed|precision|skip|boost|refine]

1. Seconds per stylization (content and style of the same size): plain vs pack, and max |diff|.
2. A batch of video frames sharing one style: plain stylizes frame by frame (style encoded each
   time, as the reference port does); the pack computes the style once and decodes the batch.
3. Reduced precision: PSNR and speed of bf16 (fp16 on CUDA) against the pack's fp32 output, on real
   photos and paintings of ../shared/images from 256 to 2048 px, with the default tiling; says what
   ``auto`` picks here. ``auto`` may only pick bf16 where it keeps at least 45 dB.
4. On CUDA: 512x512 latency and 1920x1080 frames per second.
5. The skip decoder (also relu3_1 and relu2_1) against the relu4_1 decoder it is built on: seconds per
   stylization (fp32), interleaved.
6. style_boost 0.5 (a second transfer) against one transfer: seconds per stylization, interleaved.
7. style_refine 1 and 2 (gradient steps on the paper's loss, then one transfer) against one transfer, interleaved.
Ratios > 1 mean the pack is faster.
"""
from __future__ import annotations

import argparse
import copy
import functools
import time
from typing import Callable, Hashable

import numpy as np
import torch
from PIL import Image

from common import DEFAULT_DECODER, SHARED, header, models, plain_stylize, psnr, timed

from adain_nodes import pipeline
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.loaded import LoadedModel
from adain_nodes.models.networks import SkipDecoder
from adain_nodes.models.precision import resolve_precision
from adain_nodes.tiling import NO_TILING

# content photo, style painting (../shared/images): large photos first, so 2048 px is mostly real detail
PHOTO_PAIRS = (("street.jpg", "the_scream.jpg"), ("avril.jpg", "starry_night.jpg"), ("tubingen.jpg", "mosaic.jpg"),
               ("newyork.jpg", "candy.jpg"))
MIN_PSNR_DB = 45.0  # what ``auto`` must keep to pick a reduced precision


def images(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(h // 16, 1), max(w // 16, 1), generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def photo(name: str, kind: str, long_side: int, seed: int) -> torch.Tensor:
    """An image of ../shared/images/KIND resized to ``long_side`` (synthetic when ../shared is absent)."""
    path = SHARED / "images" / kind / name
    if not path.exists():
        return images(1, long_side, long_side * 3 // 4, seed)
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = long_side / max(img.size)
        img = img.resize((max(round(img.width * scale), 8), max(round(img.height * scale), 8)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def reduced_precision(encoder, decoder, runtime, device: torch.device, args: argparse.Namespace) -> None:
    """PSNR (worst pair) and speed of each reduced precision against fp32, size by size."""
    auto = resolve_precision("auto", device)
    print(f"\n3. reduced precision against the pack's fp32, {args.photo_pairs} photo/painting pairs, default "
          f"tiling; auto = {str(auto).replace('torch.', '')} here")
    precisions = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    print(f"{'size':>6} {'precision':>9} {'fp32 s':>8} {'low s':>8} {'speed':>7} {'min PSNR dB':>12} "
          f"{'mean PSNR dB':>13}")
    for size in args.precision_sizes:
        pairs = [(photo(c, "content", size, 10 + i), photo(s, "style", size, 20 + i))
                 for i, (c, s) in enumerate(PHOTO_PAIRS[:args.photo_pairs])]
        for precision in precisions:
            seconds = {"fp32": 0.0, precision: 0.0}
            scores = []
            for i, (content, style) in enumerate(pairs):
                outputs = {}
                for which in ("fp32", precision):  # interleaved: both see the same machine load
                    encoder.precision = decoder.precision = which
                    if i == 0:  # warm-up at this size: kernel selection is not what is measured
                        pipeline.stylize(encoder, decoder, content, style, runtime)
                    start = time.perf_counter()
                    outputs[which] = pipeline.stylize(encoder, decoder, content, style, runtime)
                    seconds[which] += time.perf_counter() - start
                scores.append(psnr(outputs["fp32"], outputs[precision]))
            flag = "" if min(scores) >= MIN_PSNR_DB else f"  below {MIN_PSNR_DB:.0f} dB"
            print(f"{size:>6} {precision:>9} {seconds['fp32']:>8.2f} {seconds[precision]:>8.2f} "
                  f"{seconds['fp32'] / seconds[precision]:>6.2f}x {min(scores):>12.1f} "
                  f"{sum(scores) / len(scores):>13.1f}{flag}", flush=True)
    encoder.precision = decoder.precision = "fp32"


def single(encoder, decoder, runtime, device: torch.device, args: argparse.Namespace) -> None:
    # the reference keeps its own copies: the pack converts its modules' weights to channels_last
    plain_encoder, plain_decoder = (copy.deepcopy(m.network).to(device) for m in (encoder, decoder))
    print("\n1. one stylization, content and style of the same size")
    print(f"{'size':>6} {'plain fp32 s':>13} {'pack s':>9} {'ratio':>7} {'max |diff|':>11}")
    for size in args.sizes:
        content, style = images(1, size, size, 1), images(1, size, size, 2)
        plain_s, plain_out = timed(lambda: plain_stylize(plain_encoder, plain_decoder, content.to(device),
                                                         style.to(device)), args.repeats)
        pack_s, pack_out = timed(lambda: pipeline.stylize(encoder, decoder, content, style, runtime,
                                                          tiling=NO_TILING), args.repeats)
        diff = (plain_out.cpu() - pack_out.cpu()).abs().max().item()
        print(f"{size:>6} {plain_s:>13.3f} {pack_s:>9.3f} {plain_s / pack_s:>6.2f}x {diff:>11.2e}")

    n, s = args.frames, args.frame_size
    print(f"\n2. {n} frames of {s}x{s} sharing one {s}x{s} style")
    frames, style = images(n, s, s, 3), images(1, s, s, 4)

    def plain_frames():
        return torch.cat([plain_stylize(plain_encoder, plain_decoder, frames[i:i + 1].to(device), style.to(device))
                          for i in range(n)])

    def pack_frames():
        stats = pipeline.style_statistics(encoder, style, runtime, tiling=NO_TILING)
        features = pipeline.encode(encoder, frames, runtime, NO_TILING)
        return pipeline.decode(decoder, pipeline.blend(features, stats), runtime, NO_TILING)

    plain_s, plain_out = timed(plain_frames, 1)
    pack_s, pack_out = timed(pack_frames, 1)
    diff = (plain_out.cpu() - pack_out.cpu()).abs().max().item()
    print(f"plain {plain_s / n:.3f} s/frame, pack {pack_s / n:.3f} s/frame, ratio {plain_s / pack_s:.2f}x, "
          f"max |diff| {diff:.2e}")


def interleaved(runs: dict[Hashable, Callable[[], object]], repeats: int) -> dict[Hashable, float]:
    """Mean seconds of each run, the runs taking turns ``repeats`` times after a first round that warms all up
    (interleaving spreads the machine's drifts over all of them alike)."""
    seconds = dict.fromkeys(runs, 0.0)
    for repeat in range(repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if repeat:
                seconds[name] += time.perf_counter() - start
    return {name: total / repeats for name, total in seconds.items()}


def skip_cost(encoder, decoder, runtime, args: argparse.Namespace) -> None:
    """What the extra levels cost: a skip decoder whose trunk is ``decoder`` (skips random: speed does not
    depend on the values), timed interleaved with the relu4_1 decoder."""
    network = SkipDecoder()
    network.load_state_dict(decoder.network.state_dict(), strict=False)
    for conv in network.skip.values():
        torch.nn.init.normal_(conv.weight, std=0.01)
    skip = LoadedModel(network.eval(), "skip-bench", "skip decoder", decoder.precision)
    print("\n5. skip decoder against the relu4_1 decoder, one stylization (content and style of the same size)")
    print(f"{'size':>6} {'relu4_1 s':>10} {'skip s':>8} {'skip / relu4_1':>15}")
    for size in args.sizes:
        content, style = images(1, size, size, 5), images(1, size, size, 6)
        seconds = interleaved({name: functools.partial(pipeline.stylize, encoder, model, content, style, runtime,
                                                       tiling=NO_TILING)
                               for name, model in (("relu4_1", decoder), ("skip", skip))}, args.repeats)
        print(f"{size:>6} {seconds['relu4_1']:>10.3f} {seconds['skip']:>8.3f} "
              f"{seconds['skip'] / seconds['relu4_1']:>14.2f}x", flush=True)


def option_cost(encoder, decoder, runtime, args: argparse.Namespace, part: str, option: str,
                values: tuple) -> None:
    """What a quality option of ``pipeline.stylize`` costs at each value, against one transfer (the option off), both
    at the loaders' default precision (``auto``: what a user gets)."""
    encoder.precision = decoder.precision = "auto"
    print(f"\n{part}. {option} {' and '.join(map(str, values))} against one transfer (content and style of the same "
          f"size; precision auto: {resolve_precision('auto', runtime.compute_device())})")
    print(f"{'size':>6} {'plain s':>8} " + " ".join(f"{f'{v} s':>8} {f'{v} / plain':>12}" for v in values))
    for size in args.sizes:
        content, style = images(1, size, size, 5), images(1, size, size, 6)
        seconds = interleaved({v: functools.partial(pipeline.stylize, encoder, decoder, content, style, runtime,
                                                    **{option: v}) for v in (0, *values)}, args.repeats)
        print(f"{size:>6} {seconds[0]:>8.3f} " + " ".join(f"{seconds[v]:>8.3f} {seconds[v] / seconds[0]:>11.2f}x"
                                                          for v in values), flush=True)
    encoder.precision = decoder.precision = "fp32"


def gpu(encoder, decoder, runtime) -> None:
    print("\n4. GPU")
    style = images(1, 512, 512, 4)
    for precision in ("fp32", "fp16", "bf16"):
        encoder.precision = decoder.precision = precision
        stats = pipeline.style_statistics(encoder, style, runtime)
        for h, w, what in ((512, 512, "512x512 latency"), (1080, 1920, "1080p")):
            frame = images(1, h, w, 7).to(runtime.compute_device())
            secs, _ = timed(lambda: pipeline.decode(decoder, pipeline.blend(
                pipeline.encode(encoder, frame, runtime, NO_TILING), stats), runtime, NO_TILING), 10)
            print(f"{precision} {what}: {secs * 1000:.1f} ms, {1 / secs:.1f} fps (style reused)")
    encoder.precision = decoder.precision = "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", type=int, default=512)
    parser.add_argument("--precision-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--photo-pairs", type=int, default=3, choices=range(1, len(PHOTO_PAIRS) + 1))
    parser.add_argument("--only", choices=["speed", "precision", "skip", "boost", "refine"],
                        help="run only parts 1-2, part 3, part 5, part 6 or part 7")
    args = parser.parse_args()
    encoder, decoder, which = models()
    runtime = StandaloneRuntime()
    device = runtime.compute_device()
    print(header(device, which))
    if args.only in (None, "speed"):
        single(encoder, decoder, runtime, device, args)
    if args.only in (None, "precision"):
        reduced_precision(encoder, decoder, runtime, device, args)
    if device.type == "cuda" and args.only is None:
        gpu(encoder, decoder, runtime)
    if args.only in (None, "skip"):
        skip_cost(encoder, decoder, runtime, args)
    if args.only in (None, "boost"):
        option_cost(*models(DEFAULT_DECODER)[:2], runtime, args, "6", "boost", (0.5,))
    if args.only in (None, "refine"):
        option_cost(*models(DEFAULT_DECODER)[:2], runtime, args, "7", "refine", (1, 2))


if __name__ == "__main__":
    main()
