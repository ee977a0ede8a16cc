"""Decode an input image through PyAV exactly as ComfyUI 0.33's LoadImage does.

ComfyUI's LoadImage reads every file with ``comfy_api``'s ``VideoFromFile(...).get_components()``
(FFmpeg through PyAV) and only falls back to Pillow when that yields no frame (animated WebP).
FFmpeg's JPEG decoder and colour conversion differ from Pillow's by a few levels per pixel, which a
style transfer amplifies; decoding along the same path makes a headless run give the host's pixels.
This module repeats the video part of ``get_components_internal`` (no audio, no trimming): the first
video stream, 8-bit ``rgb24``/``rgba`` for JPEG/RGB/palette frames and ``gbr(a)pf32le`` floats for
everything else (16-bit, greyscale, YUV), the alignment padding FFmpeg needs for float conversion
of frames whose width is not a multiple of 32, the frame's rotation, and MASK = 1 - alpha.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch

from ..image_files import check_decoded_size

log = logging.getLogger(__name__)

try:
    import av
except ImportError:  # PyAV is optional outside ComfyUI; the caller decodes with Pillow instead
    av = None

# Frame formats ComfyUI converts to 8-bit RGB(A); every other format goes through 32-bit float planes.
EIGHT_BIT_FORMATS = ("yuvj420p", "yuvj422p", "yuvj444p", "rgb24", "rgba", "pal8")
# ComfyUI's LoadImage gives a 64x64 zero mask to images without alpha.
NO_ALPHA_MASK_SIZE = 64


def pyav_available() -> bool:
    """Whether PyAV can be imported (every ComfyUI install has it)."""
    return av is not None


@functools.lru_cache(maxsize=None)
def announce_decoder(with_pyav: bool) -> None:
    """Say once per run which decoder reads the input images."""
    if with_pyav:
        log.info("Input images are decoded with PyAV, as ComfyUI does")
    else:
        log.warning("PyAV (package 'av') is not installed: input images are decoded with Pillow, whose pixels "
                    "differ from ComfyUI's PyAV decode by a few levels (install 'av' to match ComfyUI)")


def _has_alpha(frame) -> bool:
    return frame.format.name == "pal8" or any(comp.is_alpha for comp in frame.format.components)


def _target_format(frame, alpha: bool) -> str:
    if frame.format.name in EIGHT_BIT_FORMATS:
        return "rgba" if alpha else "rgb24"
    return "gbrapf32le" if alpha else "gbrpf32le"


class _AlignPad:
    """Pad a frame to a multiple of 32 with smeared borders before float conversion, as ComfyUI does
    (it makes FFmpeg's conversion deterministic; the padding is cropped off again)."""

    def __init__(self, frame, time_base) -> None:
        pad_w = (frame.width + 31) // 32 * 32
        pad_h = (frame.height + 31) // 32 * 32
        self.graph = av.filter.Graph()
        self.source = self.graph.add_buffer(width=frame.width, height=frame.height,
                                            format=frame.format.name, time_base=time_base)
        pad = self.graph.add("pad", f"{pad_w}:{pad_h}:0:0")
        fill = self.graph.add("fillborders", f"left=0:right={pad_w - frame.width}:top=0:"
                                             f"bottom={pad_h - frame.height}:mode=smear")
        self.sink = self.graph.add("buffersink")
        self.source.link_to(pad)
        pad.link_to(fill)
        fill.link_to(self.sink)
        self.graph.configure()

    def to_ndarray(self, frame, image_format: str) -> np.ndarray:
        self.source.push(frame)
        padded = self.sink.pull().to_ndarray(format=image_format)
        return np.ascontiguousarray(padded[:frame.height, :frame.width])


def _frame_array(frame, image_format: str, stream, pads: list[_AlignPad]) -> np.ndarray:
    if image_format in ("gbrpf32le", "gbrapf32le") and frame.width % 32 != 0:
        if not pads:
            pads.append(_AlignPad(frame, stream.time_base))
        array = pads[0].to_ndarray(frame, image_format)
    else:
        array = frame.to_ndarray(format=image_format)
    if frame.rotation != 0:
        array = np.rot90(array, k=int(round(frame.rotation // 90)), axes=(0, 1)).copy()
    return array


def load_image_pyav(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """IMAGE ``[B, H, W, 3]`` and MASK as ComfyUI's LoadImage decodes ``path`` with PyAV.

    None when PyAV is not installed, the file has no video stream, or no frame decodes (animated
    WebP): ComfyUI then reads the file with Pillow, and so does the caller.
    """
    announce_decoder(av is not None)
    if av is None:
        return None
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        log.info("PyAV cannot open %s (%s); decoding with Pillow", path, exc)
        return None
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        # the same bound as the Pillow path, checked before a frame is decoded: a tiny file can declare a
        # huge picture (a 24 kB 1-bit PNG of 20000x10000) or thousands of frames
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        check_decoded_size(path, 1, width * height)
        pixels = 0
        frames: list[torch.Tensor] = []
        alphas: list[torch.Tensor] | None = None
        image_format = ""
        pads: list[_AlignPad] = []
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    if frame.pts is not None and frame.pts < 0:
                        continue
                    pixels += frame.width * frame.height
                    check_decoded_size(path, len(frames) + 1, pixels)
                    if not image_format:
                        alphas = [] if _has_alpha(frame) else None
                        image_format = _target_format(frame, alphas is not None)
                    array = torch.from_numpy(_frame_array(frame, image_format, stream, pads))
                    if alphas is None:
                        frames.append(array)
                    else:
                        frames.append(array[..., :-1])
                        alphas.append(array[..., -1:])
            except av.error.InvalidDataError:
                log.info("PyAV decode error in %s", path)
    if not frames:
        return None
    eight_bit = image_format in ("rgb24", "rgba")

    def to_float(batch: torch.Tensor) -> torch.Tensor:
        return batch.float() / 255.0 if eight_bit else batch

    images = to_float(torch.stack(frames))
    if alphas is None:
        mask = torch.zeros((images.shape[0], NO_ALPHA_MASK_SIZE, NO_ALPHA_MASK_SIZE), dtype=torch.float32)
    else:
        mask = 1.0 - to_float(torch.stack(alphas))[..., -1]
    return images.float(), mask.float()
