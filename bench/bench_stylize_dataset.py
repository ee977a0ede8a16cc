"""Images per second of ``stylize-dataset`` with 1 and 2 processes, and the time for ImageNet on 8 GPUs.

    python bench/bench_stylize_dataset.py [--images 24] [--styles 8] [--gpu-tflops 60]

Content images are ImageNet's most common size (500x375; photos of ../shared when present, else
smooth synthetic ones), kept at their size (--content-size 0) and styled with styles at short side 512:
the reference tool's (bethgelab/stylize-datasets) defaults. Each run is the real command in a
fresh output folder; the rate is the content phase's, summed over ranks, from the progress lines.
Also prints the multiply-adds per image and, where CUDA is present, one process on the GPU. The
ImageNet estimate uses the measured GPU rate when there is one, else the measured operation count
and an assumed sustained GPU throughput (--gpu-tflops), printed as an assumption.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from common import ROOT, models

from adain_nodes.models.weights import save_safetensors

IMAGENET_IMAGES = 1_281_167
IMAGENET_SIZE = (500, 375)  # width, height: the most common ImageNet size
PAINTER_BY_NUMBERS_STYLES = 79_433  # the style set of Stylized-ImageNet (Geirhos et al. 2019)
STYLE_SIZE = 512
GPUS = 8
RATE = re.compile(r"rank (\d+)/\d+: (\d+)/(\d+) images \(100\.0%\), ([\d.]+) images/s")


def _synthetic(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8)).resize(IMAGENET_SIZE, Image.BICUBIC)
    return low


def make_dataset(root: Path, images: int, styles: int) -> None:
    """Content in 4 class folders at ImageNet's common size, styles of ../shared (or synthetic)."""
    shared = Path(os.environ.get("ADAIN_SHARED_DIR", ROOT.parent / "shared")) / "data" / "train"
    photos = sorted((shared / "content").glob("*.jpg"))[:images]
    paintings = sorted((shared / "style").glob("*.jpg"))[:styles]
    for i in range(images):
        img = Image.open(photos[i]).convert("RGB").resize(IMAGENET_SIZE, Image.BICUBIC) if photos else _synthetic(i)
        folder = root / "content" / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"img{i:04d}.jpg", quality=90)
    (root / "style").mkdir(parents=True)
    for i in range(styles):
        img = Image.open(paintings[i]).convert("RGB") if paintings else _synthetic(1000 + i)
        img.save(root / "style" / f"style{i:03d}.jpg", quality=90)
    print(f"dataset: {images} content images {IMAGENET_SIZE[0]}x{IMAGENET_SIZE[1]}, {styles} styles "
          f"({'../shared photos and paintings' if photos else 'synthetic'})")


def model_files(root: Path) -> tuple[Path, Path, str]:
    encoder, decoder, which = models()
    folder = root / "models"
    folder.mkdir()
    save_safetensors(encoder.state_dict(), folder / "encoder.safetensors", {"kind": "encoder"})
    save_safetensors(decoder.state_dict(), folder / "decoder.safetensors", {"kind": "decoder"})
    return folder / "encoder.safetensors", folder / "decoder.safetensors", which


def run(root: Path, out: str, processes: int, device: str, encoder: Path, decoder: Path) -> tuple[float, float]:
    """(images per second of the content phase summed over ranks, wall seconds of the whole command)."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    command = launcher + ["-m", "adain_nodes", "stylize-dataset", "--content", str(root / "content"), "--style",
                          str(root / "style"), "--out", str(root / out), "--content-size", "0", "--style-size",
                          str(STYLE_SIZE), "--encoder", str(encoder), "--decoder", str(decoder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAIN_DEVICE": device}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)
    rates = {int(m[1]): float(m[4]) for m in RATE.finditer(result.stderr)}
    return sum(rates.values()), wall


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:16]


def multiply_adds(width: int, height: int, with_decoder: bool = True) -> float:
    """Multiply-adds of the encoder (and decoder) on one image, counted by torch on the plain layers."""
    encoder, decoder, _ = models()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        features = encoder.encode(torch.rand(1, 3, height, width))[0]
        if with_decoder:
            decoder(features)
    return counter.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--styles", type=int, default=8)
    parser.add_argument("--gpu-tflops", type=float, default=60.0,
                        help="ASSUMED sustained fp16 convolution throughput of one GPU, used only without CUDA")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root, args.images, args.styles)
        encoder, decoder, which = model_files(root)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"models: {which}; {cores} CPU cores (load average {load:.1f} at the start); torch {torch.__version__}")
        one, wall_one = run(root, "out1", 1, "cpu", encoder, decoder)
        two, wall_two = run(root, "out2", 2, "cpu", encoder, decoder)
        same = digest(root / "out1") == digest(root / "out2")
        print(f"CPU, 1 process ({cores} threads on different images): {one:.3f} images/s "
              f"(whole command {wall_one:.1f} s)")
        print(f"CPU, 2 processes (torchrun):                   {two:.3f} images/s "
              f"(whole command {wall_two:.1f} s); ratio 2/1 = {two / one:.2f}; same files: {same}")
        gpu = 0.0
        if torch.cuda.is_available():
            gpu, wall_gpu = run(root, "out_gpu", 1, "cuda", encoder, decoder)
            print(f"GPU ({torch.cuda.get_device_name()}), 1 process, fp16: {gpu:.2f} images/s "
                  f"(whole command {wall_gpu:.1f} s)")
    content_macs = multiply_adds(*IMAGENET_SIZE)
    style_macs = multiply_adds(STYLE_SIZE * 4 // 3, STYLE_SIZE, with_decoder=False)
    print(f"multiply-adds (plain layers; the fused decoder does fewer) per content image "
          f"{IMAGENET_SIZE[0]}x{IMAGENET_SIZE[1]} (encode + decode): "
          f"{content_macs / 1e9:.1f} G; per style ({STYLE_SIZE * 4 // 3}x{STYLE_SIZE}, encode): "
          f"{style_macs / 1e9:.1f} G")
    print(f"CPU achieved: {one * content_macs * 2 / 1e9:.1f} GFLOP/s (1 process), {two * content_macs * 2 / 1e9:.1f} "
          "GFLOP/s (2 processes)")
    print(f"ImageNet ({IMAGENET_IMAGES:,} images, 1 style each) on this CPU with 2 processes: "
          f"{IMAGENET_IMAGES:,} / {two:.3f} = {IMAGENET_IMAGES / two / 86400:.1f} days")
    # Each rank computes the statistics of the styles its images use, once: the expected number of distinct
    # styles among n = N/8 uniform draws from S is S * (1 - (1 - 1/S)^n).
    per_rank = IMAGENET_IMAGES / GPUS
    styles_per_rank = PAINTER_BY_NUMBERS_STYLES * (1 - (1 - 1 / PAINTER_BY_NUMBERS_STYLES) ** per_rank)
    if gpu:
        basis = f"measured {gpu:.2f} images/s per GPU"
        content_s = per_rank / gpu
        style_s = styles_per_rank * style_macs / content_macs / gpu
    else:
        flops = args.gpu_tflops * 1e12
        basis = (f"NO GPU HERE: an ASSUMED {args.gpu_tflops:g} TFLOP/s sustained per GPU on the measured "
                 f"{2 * content_macs / 1e9:.0f} GFLOP per image, i.e. {flops / (2 * content_macs):.0f} images/s "
                 "per GPU; rerun on a GPU for a measured number")
        content_s = per_rank * 2 * content_macs / flops
        style_s = styles_per_rank * 2 * style_macs / flops
    print(f"ImageNet on {GPUS} GPUs ({basis}):")
    print(f"  content: {IMAGENET_IMAGES:,} / {GPUS} = {per_rank:,.0f} images per GPU -> {content_s / 3600:.2f} h")
    print(f"  styles: {PAINTER_BY_NUMBERS_STYLES:,} * (1 - (1 - 1/{PAINTER_BY_NUMBERS_STYLES:,})^{per_rank:,.0f}) = "
          f"{styles_per_rank:,.0f} style images per GPU -> {style_s / 3600:.2f} h")
    print(f"  total: {(content_s + style_s) / 3600:.2f} h, if image decoding keeps up (enough --workers per GPU)")


if __name__ == "__main__":
    main()
