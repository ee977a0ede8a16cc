"""Temporally stable AdaIN for frame sequences: the maths behind AdaIN Video Style Transfer (no ComfyUI here).

Stylizing each frame alone makes a clip shimmer, for causes that each have a lever here
(``bench/bench_video.py`` measures them one by one on pans, zooms and moving objects):

- **The networks' 8-px grid** (most of the flicker): the encoder's max-pools and the decoder's nearest
  upsampling see a picture that moved by a non-multiple of 8 px differently. ``align`` estimates the global
  motion between consecutive input frames (phase correlation) and pads each frame so the scene sits on the
  grid phase it had in the first frame; the output is cropped back. The weights stay as trained.
- **Per-frame statistics**: AdaIN normalises each frame by its own feature mean and std, so the whole picture
  pumps as objects enter and leave. ``pool_window`` normalises by statistics pooled over the last N frames.
- **What remains**: ``smoothing`` blends with the previous output moved by the estimated motion, only where the
  input frames agree after that motion (an occlusion check), so nothing moving ghosts. A scene cut (most of the
  picture disagrees) resets the history.

Frames are processed in chunks carried from one to the next, so a long clip needs memory for a chunk, not the clip.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import pipeline
from .core.color import luminance, luminance_as_rgb, match_color, transfer_luminance
from .core.layers import GRID
from .core.stats import Moments, MomentsWindow
from .errors import AdaINInputError
from .host.runtime import Runtime
from .pipeline import BYTES_PER_PIXEL, COLOR_MODES, DEFAULT_TILING, AdaINStyle, Decoder, Encoder
from .tiling import Tiling

log = logging.getLogger(__name__)

MAX_CHUNK = 16  # frames encoded and decoded together at most (GPU); the CPU runs one at a time
CUT_FRACTION = 0.5  # more of the picture than this disagreeing after the motion: a new shot


@dataclass(frozen=True)
class Stability:
    """What to do against flicker. ``Stability.off()`` stylizes each frame alone."""

    align: bool = True  # keep the scene on one grid phase (global motion by phase correlation)
    pool_window: int = 8  # normalise by content statistics pooled over this many frames (1: each frame's own)
    smoothing: float = 0.0  # blend weight of the motion-compensated previous output where the surface is the same
    occlusion_threshold: float = 0.08  # input difference (0..1) above which a pixel is not the same surface

    def __post_init__(self) -> None:
        if not isinstance(self.pool_window, int) or self.pool_window < 1:
            raise AdaINInputError(f"pool_window must be a whole number of frames >= 1, got {self.pool_window!r}")
        if not 0.0 <= self.smoothing < 1.0:
            raise AdaINInputError(f"temporal_smoothing must be from 0 to below 1, got {self.smoothing!r}")
        if not 0.0 < self.occlusion_threshold <= 1.0:
            raise AdaINInputError("occlusion_threshold must be above 0 and at most 1, got "
                                  f"{self.occlusion_threshold!r}")

    @classmethod
    def off(cls) -> Stability:
        return cls(align=False, pool_window=1, smoothing=0.0)

    @property
    def tracks_motion(self) -> bool:
        return self.align or self.pool_window > 1 or self.smoothing > 0.0


def estimate_shift(previous: Tensor, current: Tensor) -> tuple[int, int]:
    """The global translation ``(dy, dx)`` in whole pixels with ``current[y, x] ~ previous[y + dy, x + dx]``.

    Phase correlation (Kuglin & Hines 1975) of the Hann-windowed luminance of two RGB ``[3, H, W]`` frames:
    the peak of the normalised cross-power spectrum's inverse is where the frames line up.
    """
    a, b = (luminance(x[None].float())[0, 0] for x in (previous, current))
    h, w = a.shape
    window = torch.hann_window(h, periodic=False, dtype=a.dtype)[:, None] * \
        torch.hann_window(w, periodic=False, dtype=a.dtype)[None]
    fa, fb = (torch.fft.rfft2((x - x.mean()) * window) for x in (a, b))
    cross = fa * fb.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-12), s=(h, w))
    peak = int(surface.argmax())
    dy, dx = divmod(peak, w)
    return (dy - h if dy > h // 2 else dy), (dx - w if dx > w // 2 else dx)


def translate(image: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """``image`` ``[..., H, W]`` moved so ``out[..., y, x] = image[..., y + dy, x + dx]``, and a ``[H, W]`` mask of
    where that pixel exists (zeros elsewhere)."""
    h, w = image.shape[-2:]
    out = torch.zeros_like(image)
    valid = torch.zeros((h, w), dtype=torch.bool, device=image.device)
    ys, yd = slice(max(0, dy), min(h, h + dy)), slice(max(0, -dy), min(h, h - dy))
    xs, xd = slice(max(0, dx), min(w, w + dx)), slice(max(0, -dx), min(w, w - dx))
    out[..., yd, xd] = image[..., ys, xs]
    valid[yd, xd] = True
    return out, valid


def same_surface(previous: Tensor, current: Tensor, dy: int, dx: int, threshold: float) -> Tensor:
    """``[H, W]`` float mask of the pixels of ``current`` that ``previous`` (RGB ``[3, H, W]``) moved by the
    global motion shows too: in view, and no colour channel differs by more than ``threshold`` near them
    (the 5x5 neighbourhood, so the edges of moving objects count as occluded)."""
    moved, valid = translate(previous, dy, dx)
    differs = ((current - moved).abs().amax(dim=0) > threshold).float()
    differs = F.max_pool2d(differs[None, None], 5, stride=1, padding=2)[0, 0]
    return valid.float() * (1.0 - differs)


def is_cut(previous: Tensor, current: Tensor, dy: int, dx: int, threshold: float, stride: int = 4) -> bool:
    """A new shot: more than CUT_FRACTION of the overlap differs after the motion (every ``stride``-th pixel)."""
    h, w = current.shape[-2:]
    ys, yd = slice(max(0, dy), min(h, h + dy), stride), slice(max(0, -dy), min(h, h - dy), stride)
    xs, xd = slice(max(0, dx), min(w, w + dx), stride), slice(max(0, -dx), min(w, w - dx), stride)
    differs = (current[:, yd, xd] - previous[:, ys, xs]).abs().amax(dim=0) > threshold
    return differs.numel() == 0 or float(differs.float().mean()) > CUT_FRACTION


class _Quiet:
    """The runtime without the pipeline's own progress bars: the video reports per frame instead."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def progress(self, total: int) -> Callable[[int], None]:
        return lambda done: None

    def __getattr__(self, name: str):
        return getattr(self._runtime, name)


def _style_rows(style: AdaINStyle, rows: list[int]) -> AdaINStyle:
    return dataclasses.replace(style, levels={n: (m[rows], s[rows]) for n, (m, s) in style.levels.items()})


class VideoStylizer:
    """Stylizes a clip chunk by chunk (``push``), carrying what stability needs from one frame to the next.

    ``style`` is RGB ``[1 or N, 3, h, w]``: one style for the clip, or one per frame of an N-frame clip. The
    result does not depend on how the clip is cut into chunks.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, style: Tensor, runtime: Runtime, alpha: float = 1.0,
                 color: str = "off", stability: Stability = Stability(), tiling: Tiling = DEFAULT_TILING,
                 frame_count: int | None = None, boost: float = 0.0, refine: int = 0) -> None:
        if color not in COLOR_MODES:
            raise AdaINInputError(f"preserve_color must be one of {COLOR_MODES}, got {color!r}")
        if style.shape[0] != 1 and style.shape[0] != frame_count:
            raise AdaINInputError(f"the style batch has {style.shape[0]} images; give 1 (for the whole clip) or one "
                                  f"per frame ({frame_count})")
        self.encoder, self.decoder, self.runtime = encoder, decoder, _Quiet(runtime)
        self.alpha, self.color = pipeline.check_unit(alpha, "alpha"), color
        self.boost = pipeline.check_unit(boost, "style_boost")
        self.refine = pipeline.check_refine_steps(refine)
        self.stability, self.tiling = stability, tiling
        self.style_images = style
        self.style: AdaINStyle | None = None  # computed with the first frame (colour matching needs it)
        self.size: tuple[int, int] | None = None
        self.done = 0
        self.offset = (0, 0)  # where the camera is, relative to the first frame (whole pixels)
        self.first_frame: Tensor | None = None  # the colour reference of "match style colors"
        self.previous_input: Tensor | None = None
        self.previous_output: Tensor | None = None
        self.windows: dict[str, MomentsWindow] = {}  # per encoder level

    def _check_size(self, frames: Tensor) -> None:
        size = tuple(frames.shape[-2:])
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise AdaINInputError(f"frame {self.done + 1} is {size[1]}x{size[0]} but the clip's first frame is "
                                  f"{self.size[1]}x{self.size[0]}; all frames of a clip must have one size: "
                                  "resize them first (e.g. with an Upscale Image node)")

    def _styles(self, count: int) -> AdaINStyle:
        if self.style is None:
            images = self.style_images
            if self.color == "match style colors":  # to the first frame's colours: per-frame recolouring flickers
                first = self.first_frame[None].to(images).expand(images.shape[0], -1, -1, -1)
                images = match_color(images, first)
            elif self.color == "luminance only":
                images = luminance_as_rgb(images)
            self.style = pipeline.style_statistics(self.encoder, images, self.runtime, tiling=self.tiling)
            if self.boost > 0 or self.refine > 0:
                self.style = self._corrected(self.style)
        if self.style.count == 1:
            return self.style
        return _style_rows(self.style, list(range(self.done, self.done + count)))

    def _corrected(self, style: AdaINStyle) -> AdaINStyle:
        """The clip's style(s) boosted and/or refined as the one-node transfer does (``pipeline.boosted_style``,
        then ``pipeline.refined_style``), measured once, on the first frame: one correction for the whole clip, so
        it cannot flicker. With a style per frame, the first frame's correction (a shift of the means, a scale of
        the stds) applies to every row."""
        source = self.first_frame[None]
        source = luminance_as_rgb(source) if self.color == "luminance only" else source
        first = corrected = _style_rows(style, [0])
        if self.boost > 0:
            features = pipeline.encode(self.encoder, source, self.runtime, self.tiling, self.decoder.network.levels)
            corrected = pipeline.boosted_style_for(self.encoder, self.decoder, features, first, self.boost,
                                                   self.runtime, self.tiling)
        if self.refine > 0:
            corrected = pipeline.refined_style(self.encoder, self.decoder, source, corrected, self.refine,
                                               self.runtime)
        levels = {}
        for name, (mean, std) in corrected.levels.items():
            first_mean, first_std = first.levels[name]
            all_mean, all_std = style.levels[name]
            levels[name] = (all_mean + (mean - first_mean), all_std * (std / first_std))
        return dataclasses.replace(style, levels=levels)

    def _motions(self, frames: Tensor) -> list[tuple[int, int, bool]]:
        """Per frame: the shift from the frame before (0, 0 for the first) and whether a new shot starts."""
        found = []
        previous = self.previous_input
        for frame in frames:
            if previous is None:
                found.append((0, 0, True))
            else:
                dy, dx = estimate_shift(previous, frame)
                found.append((dy, dx, is_cut(previous, frame, dy, dx, self.stability.occlusion_threshold)))
            previous = frame
        return found

    def _pooled(self, features: pipeline.AdaINFeatures, cuts: list[bool]) -> dict[str, tuple[Tensor, Tensor]] | None:
        """Content statistics pooled over each frame's window, per level (``None``: each frame's own)."""
        if self.stability.pool_window == 1:
            return None
        return {name: self.windows.setdefault(name, MomentsWindow(self.stability.pool_window)).pooled(
            Moments.of(level), cuts) for name, level in features.content.items()}

    @torch.inference_mode()
    def push(self, frames: Tensor) -> Tensor:
        """Stylize the next RGB ``[K, 3, H, W]`` frames of the clip."""
        self._check_size(frames)
        count = frames.shape[0]
        motions = self._motions(frames) if self.stability.tracks_motion else [(0, 0, False)] * count
        if self.first_frame is None:
            self.first_frame = frames[0]
        style = self._styles(count)
        source = luminance_as_rgb(frames) if self.color == "luminance only" else frames
        pads = []
        if self.stability.align:
            padded = []
            for frame, (dy, dx, cut) in zip(source, motions):
                self.offset = (0, 0) if cut else (self.offset[0] + dy, self.offset[1] + dx)
                top, left = self.offset[0] % GRID, self.offset[1] % GRID
                pads.append((top, left))
                mode = "reflect" if min(frame.shape[-2:]) > GRID else "replicate"  # reflect needs more pixels
                padded.append(F.pad(frame[None], (left, GRID - left, top, GRID - top), mode=mode))
            source = torch.cat(padded)
        features = pipeline.encode(self.encoder, source, self.runtime, self.tiling, self.decoder.network.levels)
        pooled = self._pooled(features, [cut for _, _, cut in motions])
        styled = pipeline.blend(features, style, self.alpha, content_stats=pooled, in_place=True)
        images = pipeline.decode(self.decoder, styled, self.runtime, self.tiling)
        del features, styled
        h, w = frames.shape[-2:]
        if pads:
            images = torch.stack([image[:, top:top + h, left:left + w] for image, (top, left) in zip(images, pads)])
        if self.color == "luminance only":
            images = transfer_luminance(frames.to(images), images)
        return self._smooth(frames, images, motions)

    def _smooth(self, frames: Tensor, images: Tensor, motions: list[tuple[int, int, bool]]) -> Tensor:
        weight = self.stability.smoothing
        outputs = []
        for frame, image, (dy, dx, cut) in zip(frames, images, motions):
            if weight > 0.0 and not cut and self.previous_output is not None:
                seen = same_surface(self.previous_input, frame, dy, dx, self.stability.occlusion_threshold)
                moved, _ = translate(self.previous_output, dy, dx)
                image = torch.lerp(image, moved, (weight * seen).to(image))
            outputs.append(image)
            self.previous_output, self.previous_input = image, frame
        self.done += frames.shape[0]
        return torch.stack(outputs)


def chunk_size(runtime: Runtime, size: tuple[int, int]) -> int:
    """Frames per chunk: one on the CPU (fastest there, see StandaloneRuntime.CPU_WORKING_BYTES, and the same in
    ComfyUI and headless, so both give the same frames: batching changes bf16 rounding), else what the device's
    free memory holds, at most MAX_CHUNK."""
    if runtime.compute_device().type == "cpu":
        return 1
    per_frame = (size[0] + GRID) * (size[1] + GRID) * BYTES_PER_PIXEL
    return max(1, min(MAX_CHUNK, runtime.free_bytes() // per_frame))


def stylize_video(encoder: Encoder, decoder: Decoder, frames: Tensor | Sequence[Tensor], style: Tensor,
                  runtime: Runtime, alpha: float = 1.0, color: str = "off", stability: Stability = Stability(),
                  tiling: Tiling = DEFAULT_TILING, chunk: int | None = None, boost: float = 0.0,
                  refine: int = 0) -> Tensor:
    """Stylize a clip of RGB frames: ``[N, 3, H, W]`` (a view will do), a list of ``[3, H, W]`` frames of one size,
    or any sequence whose slices are ``[K, 3, H, W]`` tensors (the node's host batch, converted a chunk at a time).

    The result, RGB in 0..1, is written into one ``[N, 3, H, W]`` tensor on the runtime's output device whose
    memory is laid out as a host IMAGE ``[N, H, W, 3]`` (``permute(0, 2, 3, 1)`` of it copies nothing); working
    memory is one chunk of frames. Progress is reported per frame and a cancel is honoured between chunks.
    """
    count = len(frames)
    if count == 0:
        raise AdaINInputError("the clip has no frames; connect a video's images (Get Video Components) or a batch")
    if isinstance(frames, list):  # a tensor or a host batch has one size by construction
        for i, frame in enumerate(frames):
            if tuple(frame.shape[-2:]) != tuple(frames[0].shape[-2:]):
                raise AdaINInputError(f"frame {i + 1} is {frame.shape[-1]}x{frame.shape[-2]} but frame 1 is "
                                      f"{frames[0].shape[-1]}x{frames[0].shape[-2]}; all frames of a clip must "
                                      "have one size: resize them first (e.g. with an Upscale Image node)")
    h, w = frames[0].shape[-2:]
    chunk = chunk or chunk_size(runtime, (h, w))
    stylizer = VideoStylizer(encoder, decoder, style, runtime, alpha, color, stability, tiling, count, boost, refine)
    output = torch.empty((count, h, w, 3), device=runtime.output_device()).permute(0, 3, 1, 2)
    report = runtime.progress(count)
    for start in range(0, count, chunk):
        runtime.check_interrupt()
        part = frames[start:start + chunk]
        part = torch.stack(list(part)) if isinstance(part, list) else part
        output[start:start + part.shape[0]] = stylizer.push(part.to(output.device, torch.float32))
        report(min(start + chunk, count))
    return output
