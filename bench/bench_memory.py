"""Cost of large images: seconds and peak resident memory against megapixels, for the default (skip) decoder
and the relu4_1 decoder, tiled and untiled, and with ``--boost`` / ``--refine`` the default decoder with that
style_boost / style_refine.

    python bench/bench_memory.py [--sizes 512 1024 2048 4096] [--untiled-up-to 2048] [--psnr-size 1024] [--boost 0.5]
                                 [--refine 1]

Each measurement runs in a fresh subprocess so its peak RSS (``ru_maxrss``) and CPU time are its own (CPU
seconds, user + system, compare better than wall seconds on a shared machine); the
"model-only" row is the same process stopping right after loading, the reference for memory. The goals
(issue 24): with the default decoder, peak memory at 16 MP about that at 4 MP plus the image's own size, under
3 GB at 4096x4096, and at most 1.2x the relu4_1 decoder's time. style_boost transfers twice, one after the
other, so its peak should be one transfer's plus the first output's pixels, at about twice the time. style_refine's
gradient steps run on the whole picture up to 0.5 MP (a scaled-down copy above), so its peak should level off there
at about ``refine.BYTES_PER_PIXEL`` x 0.5 MP above one transfer's, whatever the size. Also prints
the PSNR of tiled against untiled output at ``--psnr-size`` for each decoder.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from common import models, psnr

from adain_nodes.host.paths import DEFAULT_DECODER, RELU4_1_DECODER

DECODERS = {"skip (default)": DEFAULT_DECODER, "relu4_1": RELU4_1_DECODER}


def child(size: int, tile: int, decoder_file: str, precision: str, boost: float, refine: int) -> None:
    from adain_nodes import pipeline
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.tiling import Tiling

    encoder, decoder, _ = models(decoder_file)
    encoder.precision = decoder.precision = precision
    runtime = StandaloneRuntime(torch.device("cpu"))
    start, cpu_start = time.perf_counter(), sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    if size:
        g = torch.Generator().manual_seed(0)
        content = torch.nn.functional.interpolate(torch.rand(1, 3, size // 32, size // 32, generator=g),
                                                  size=(size, size), mode="bilinear")
        style = torch.rand(1, 3, 512, 512, generator=g)
        out = pipeline.stylize(encoder, decoder, content, style, runtime, tiling=Tiling(tile, 64) if tile else
                               Tiling(0, 0), boost=boost, refine=refine)
        assert out.shape[-1] == size
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_start,
                      "peak_mb": usage.ru_maxrss / 1024}))


def measure(size: int, tile: int, decoder_file: str, precision: str, boost: float = 0.0, refine: int = 0) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", str(size), str(tile), decoder_file, precision,
                             str(boost), str(refine)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def tiled_psnr(size: int, decoder_file: str) -> float:
    from adain_nodes import pipeline
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.tiling import NO_TILING, Tiling

    encoder, decoder, _ = models(decoder_file)
    runtime = StandaloneRuntime(torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    content = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=g),
                                              size=(size, size), mode="bilinear")
    style = torch.rand(1, 3, 256, 256, generator=g)
    whole = pipeline.stylize(encoder, decoder, content, style, runtime, tiling=NO_TILING)
    tiled = pipeline.stylize(encoder, decoder, content, style, runtime, tiling=Tiling(size // 2, 64))
    return psnr(whole, tiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--untiled-up-to", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--psnr-size", type=int, default=1024, help="0: skip the PSNR check")
    parser.add_argument("--precision", default="auto", help="of both networks (the loaders' default: auto)")
    parser.add_argument("--boost", type=float, default=0.0,
                        help="also measure the default decoder with this style_boost (0: not measured)")
    parser.add_argument("--refine", type=int, default=0,
                        help="also measure the default decoder with this many style_refine steps (0: not measured)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2], args.child[3], float(args.child[4]),
              int(args.child[5]))
        return
    methods = {name: (file, 0.0, 0) for name, file in DECODERS.items()}
    if args.boost:
        methods[f"skip, boost {args.boost:g}"] = (DEFAULT_DECODER, args.boost, 0)
    if args.refine:
        methods[f"skip, refine {args.refine}"] = (DEFAULT_DECODER, 0.0, args.refine)
    base = measure(0, 0, DEFAULT_DECODER, args.precision)
    print(f"CPU, {torch.get_num_threads()} threads, tile {args.tile}, precision {args.precision}; model-only process "
          f"peak {base['peak_mb']:.0f} MB")
    print(f"{'decoder':>15} {'size':>11} {'MP':>6} {'tiled s':>8} {'cpu s':>7} {'tiled peak MB':>14} {'untiled s':>10} "
          f"{'cpu s':>7} {'untiled peak MB':>16}")
    seconds: dict[tuple[str, int], float] = {}
    for size in args.sizes:
        for name, (file, boost, refine) in methods.items():
            tiled = measure(size, args.tile, file, args.precision, boost, refine)
            seconds[name, size] = tiled["cpu_seconds"]
            row = (f"{name:>15} {size:>5}x{size:<5} {size * size / 1e6:>6.2f} {tiled['seconds']:>8.1f} "
                   f"{tiled['cpu_seconds']:>7.1f} {tiled['peak_mb']:>14.0f}")
            if size <= args.untiled_up_to:
                whole = measure(size, 0, file, args.precision, boost, refine)
                row += f" {whole['seconds']:>10.1f} {whole['cpu_seconds']:>7.1f} {whole['peak_mb']:>16.0f}"
            print(row, flush=True)
        print(f"{'':>15} CPU time skip / relu4_1 at {size} (tiled): "
              f"{seconds['skip (default)', size] / seconds['relu4_1', size]:.2f}x", flush=True)
        for name in list(methods)[len(DECODERS):]:
            print(f"{'':>15} CPU time {name} / skip at {size} (tiled): "
                  f"{seconds[name, size] / seconds['skip (default)', size]:.2f}x", flush=True)
    if args.psnr_size:
        for name, file in DECODERS.items():
            print(f"{name}: tiled (tile {args.psnr_size // 2}, overlap 64) vs untiled at {args.psnr_size}x"
                  f"{args.psnr_size}: PSNR {tiled_psnr(args.psnr_size, file):.1f} dB")


if __name__ == "__main__":
    main()
