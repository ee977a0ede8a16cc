"""Cost of large images: seconds and peak resident memory against megapixels, tiled and untiled.

    python bench/bench_memory.py [--sizes 512 1024 2048 4096] [--untiled-up-to 2048] [--psnr-size 1024]

Each measurement runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own; the
"model-only" row is the same process stopping right after loading, the reference for memory.
Also prints the PSNR of tiled against untiled output at ``--psnr-size``.
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


def child(size: int, tile: int) -> None:
    from adain_nodes import pipeline
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.tiling import Tiling

    encoder, decoder, _ = models()
    runtime = StandaloneRuntime(torch.device("cpu"))
    start = time.perf_counter()
    if size:
        g = torch.Generator().manual_seed(0)
        content = torch.nn.functional.interpolate(torch.rand(1, 3, size // 32, size // 32, generator=g),
                                                  size=(size, size), mode="bilinear")
        style = torch.rand(1, 3, 512, 512, generator=g)
        out = pipeline.stylize(encoder, decoder, content, style, runtime, tiling=Tiling(tile, 64) if tile else
                               Tiling(0, 0))
        assert out.shape[-1] == size
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(size: int, tile: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", str(size), str(tile)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def tiled_psnr(size: int) -> float:
    from adain_nodes import pipeline
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.tiling import NO_TILING, Tiling

    encoder, decoder, _ = models()
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
    parser.add_argument("--psnr-size", type=int, default=1024)
    parser.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    base = measure(0, 0)
    print(f"CPU, {torch.get_num_threads()} threads; model-only process peak {base['peak_mb']:.0f} MB")
    print(f"{'size':>11} {'MP':>6} {'tiled s':>8} {'tiled peak MB':>14} {'untiled s':>10} {'untiled peak MB':>16}")
    for size in args.sizes:
        tiled = measure(size, args.tile)
        row = f"{size:>5}x{size:<5} {size * size / 1e6:>6.2f} {tiled['seconds']:>8.1f} {tiled['peak_mb']:>14.0f}"
        if size <= args.untiled_up_to:
            whole = measure(size, 0)
            row += f" {whole['seconds']:>10.1f} {whole['peak_mb']:>16.0f}"
        print(row, flush=True)
    print(f"\ntiled (tile {args.psnr_size // 2}, overlap 64) vs untiled at {args.psnr_size}x{args.psnr_size}: "
          f"PSNR {tiled_psnr(args.psnr_size):.1f} dB")


if __name__ == "__main__":
    main()
