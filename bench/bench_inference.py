"""Speed of the pack next to a plain fp32 NCHW run of the same network, measured in the same process.

    python bench/bench_inference.py [--sizes 256 512 1024] [--repeats 3] [--frames 8]

1. Seconds per stylization (content and style of the same size): plain vs pack, and max |diff|.
2. A batch of video frames sharing one style: plain stylizes frame by frame (style encoded each
   time, as the reference port does); the pack computes the style once and decodes the batch.
3. Reduced precision: time and error of bf16 / fp16 against the pack's fp32 output.
4. On CUDA: 512x512 latency and 1920x1080 frames per second.
Ratios > 1 mean the pack is faster.
"""
from __future__ import annotations

import argparse
import copy

import torch

from common import header, models, plain_stylize, timed

from adain_nodes import pipeline
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.tiling import NO_TILING


def images(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(h // 16, 1), max(w // 16, 1), generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", type=int, default=512)
    args = parser.parse_args()
    encoder, decoder, which = models()
    runtime = StandaloneRuntime()
    device = runtime.compute_device()
    print(header(device, which))
    encoder.precision = decoder.precision = "fp32"
    # the reference keeps its own copies: the pack converts its modules' weights to channels_last
    plain_encoder, plain_decoder = copy.deepcopy(encoder).to(device), copy.deepcopy(decoder).to(device)

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

    print("\n3. reduced precision against the pack's fp32 (512x512)")
    content, style = images(1, 512, 512, 5), images(1, 512, 512, 6)
    fp32_s, reference = timed(lambda: pipeline.stylize(encoder, decoder, content, style, runtime,
                                                       tiling=NO_TILING), args.repeats)
    for precision in ("bf16", "fp16"):
        encoder.precision = decoder.precision = precision
        try:
            low_s, out = timed(lambda: pipeline.stylize(encoder, decoder, content, style, runtime,
                                                        tiling=NO_TILING), args.repeats)
        except RuntimeError as exc:
            print(f"{precision}: not supported here ({exc})")
            continue
        err = (out.cpu() - reference.cpu()).abs()
        print(f"{precision}: {low_s:.3f} s vs fp32 {fp32_s:.3f} s, ratio {fp32_s / low_s:.2f}x, "
              f"max |diff| {err.max():.3f}, mean |diff| {err.mean():.4f} (of 1.0)")
    encoder.precision = decoder.precision = "fp32"

    if device.type == "cuda":
        print("\n4. GPU")
        for precision in ("fp32", "fp16", "bf16"):
            encoder.precision = decoder.precision = precision
            stats = pipeline.style_statistics(encoder, style, runtime)
            for h, w, what in ((512, 512, "512x512 latency"), (1080, 1920, "1080p")):
                frame = images(1, h, w, 7).to(device)
                secs, _ = timed(lambda: pipeline.decode(decoder, pipeline.blend(
                    pipeline.encode(encoder, frame, runtime, NO_TILING), stats), runtime, NO_TILING), 10)
                print(f"{precision} {what}: {secs * 1000:.1f} ms, {1 / secs:.1f} fps (style reused)")


if __name__ == "__main__":
    main()
