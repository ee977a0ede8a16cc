"""ComfyUI 0.33's core Load Video, Get Video Components, Create Video and Save Video, for headless runs.

They follow ``comfy_extras/nodes_video.py`` and ``comfy_api``'s ``VideoFromFile`` / ``VideoFromComponents`` call for
call through PyAV, so a headless run decodes the same frames and audio and encodes the same file: frames as
``pyav_decode`` reads them (ComfyUI's path), audio resampled to planar float, frame rate from the stream's average
rate; Save Video writes H.264 ``yuv420p`` (BT.709, limited range) with AAC audio, the workflow and prompt as container
tags, named ``{prefix}_{counter:05}_.mp4``. What headless runs do not need is refused with a clear message:
10-bit, HDR, AV1/WebM, saving a loaded video without Create Video.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_files import atomic_write_new
from .core_nodes import Folders, numbered_names, save_target
from .pyav_decode import av, load_image_pyav

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".gif")
CONTAINERS = {"auto": "mp4", "mp4": "mp4", "mkv": "matroska"}  # ComfyUI: auto is MP4 unless the name says else
SUFFIXES = {"auto": "mp4", "mp4": "mp4", "mkv": "mkv"}
BT709_NCL = 1


@dataclass
class VideoFile:
    """LoadVideo's VIDEO: a file, decoded when its components are asked for (ComfyUI's VideoFromFile)."""

    path: Path


@dataclass
class VideoFromComponents:
    """CreateVideo's VIDEO: frames, audio and frame rate (ComfyUI's VideoFromComponents)."""

    images: torch.Tensor
    audio: dict | None
    frame_rate: Fraction
    bit_depth: int = 8
    color_space: str = "sRGB"


def _require_av() -> None:
    if av is None:
        raise RuntimeError("the video nodes need PyAV (pip install av), as ComfyUI does")


def decode_audio(path: Path) -> dict | None:
    """The last decodable audio stream as ComfyUI's AUDIO: ``{"waveform": [1, C, S] float32, "sample_rate"}``."""
    with av.open(str(path), mode="r") as container:
        stream = next((s for s in reversed(container.streams.audio) if s.codec_context is not None), None)
        if stream is None:
            return None
        resampler = av.audio.resampler.AudioResampler(format="fltp")
        chunks = []
        for packet in container.demux(stream):
            for frame in itertools.chain.from_iterable(map(resampler.resample, packet.decode())):
                chunks.append(frame.to_ndarray())
        if not chunks:
            return None
        waveform = torch.from_numpy(np.concatenate(chunks, axis=1)).unsqueeze(0)
        return {"waveform": waveform, "sample_rate": int(stream.sample_rate) if stream.sample_rate else 1}


def components(video: VideoFile | VideoFromComponents) -> VideoFromComponents:
    if isinstance(video, VideoFromComponents):
        return video
    _require_av()
    decoded = load_image_pyav(video.path)
    if decoded is None:
        raise ValueError(f"{video.path.name}: no video frame could be decoded")
    with av.open(str(video.path), mode="r") as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(1)
        depth = max((c.bits for c in stream.format.components), default=8) if stream.format else 8
        space = _color_space(stream.color_trc)
    return VideoFromComponents(decoded[0], decode_audio(video.path), rate, depth, space)


def _color_space(transfer) -> str:
    """ComfyUI's names for a stream's transfer characteristic (sRGB unless HLG or PQ)."""
    from av.video.reformatter import ColorTrc

    return {ColorTrc.ARIB_STD_B67: "HDR", ColorTrc.SMPTE2084: "HDR PQ"}.get(transfer, "sRGB")


def encode_video(video: VideoFromComponents, path: Path, container_format: str, metadata: dict | None) -> None:
    """``VideoFromComponents.save_to`` for 8-bit sRGB H.264 (codec auto), into ``path``."""
    from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc

    options = {"movflags": "use_metadata_tags+faststart"} if container_format == "mp4" else None
    with av.open(str(path), mode="w", format=container_format, **({"options": options} if options else {})) as output:
        for key, value in (metadata or {}).items():
            output.metadata[key] = json.dumps(value)
        frame_rate = Fraction(round(video.frame_rate * 1000), 1000)
        stream = output.add_stream("h264", rate=frame_rate)
        stream.width, stream.height = video.images.shape[2], video.images.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {}

        def colour(target) -> None:
            target.color_primaries = ColorPrimaries.BT709
            target.color_trc = ColorTrc.IEC61966_2_1
            target.colorspace = BT709_NCL
            target.color_range = ColorRange.MPEG

        colour(stream.codec_context)
        audio_stream, waveform, layout, rate = None, None, None, 1
        if video.audio:
            rate = int(video.audio["sample_rate"])
            waveform = video.audio["waveform"]
            waveform = waveform[0, :, :math.ceil((rate / frame_rate) * video.images.shape[0])]
            layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(waveform.shape[0], "stereo")
            audio_stream = output.add_stream("aac", rate=rate, layout=layout)
        for image in video.images:
            array = (image * 255).clamp(0, 255).byte().cpu().numpy()
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p",
                                                                               dst_colorspace=BT709_NCL)
            colour(frame)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
        if audio_stream is not None:
            frame = av.AudioFrame.from_ndarray(waveform.float().cpu().contiguous().numpy(), format="fltp",
                                               layout=layout)
            frame.sample_rate = rate
            frame.pts = 0
            output.mux(audio_stream.encode(frame))
            output.mux(audio_stream.encode(None))


def make_video_nodes(folders: Folders) -> dict[str, type]:
    def video_files() -> list[str]:
        if not folders.input_dir.is_dir():
            return []
        return sorted(f.name for f in folders.input_dir.iterdir()
                      if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)

    class LoadVideo:
        CATEGORY = "video"
        RETURN_TYPES = ("VIDEO",)
        FUNCTION = "load"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"file": (video_files(), {"video_upload": True})}}

        @classmethod
        def VALIDATE_INPUTS(cls, file):
            """A linked name is None here (as ComfyUI passes links): load checks it when it arrives."""
            return True if file is None else folders.input_problem("video", file) or True

        def load(self, file):
            path = folders.checked_input("video", file)
            return (VideoFile(path),)

    class GetVideoComponents:
        CATEGORY = "video"
        RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "INT", "COMBO")
        RETURN_NAMES = ("images", "audio", "fps", "bit_depth", "color_space")
        FUNCTION = "split"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"video": ("VIDEO",)}}

        def split(self, video):
            parts = components(video)
            return (parts.images, parts.audio, float(parts.frame_rate), parts.bit_depth, parts.color_space)

    class CreateVideo:
        CATEGORY = "video"
        RETURN_TYPES = ("VIDEO",)
        FUNCTION = "create"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE",),
                                 "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
                    "optional": {"audio": ("AUDIO",),
                                 "bit_depth": ("INT", {"default": 8, "min": 8, "max": 10, "step": 2})}}

        def create(self, images, fps, audio=None, bit_depth=8):
            return (VideoFromComponents(images, audio, Fraction(fps), int(bit_depth)),)

    class SaveVideo:
        CATEGORY = "video"
        RETURN_TYPES = ("VIDEO",)
        RETURN_NAMES = ("video",)
        FUNCTION = "save"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"video": ("VIDEO",),
                                 "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                                 "format": (["auto", "mp4", "mkv", "webm"],)},
                    "optional": {"format.codec": (["auto", "h264", "av1"],)},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

        def save(self, video, filename_prefix, format, prompt=None, extra_pnginfo=None, **codec: Any):
            _require_av()
            codec_name = codec.get("format.codec", "auto")
            if format not in CONTAINERS or codec_name not in ("auto", "h264"):
                raise ValueError(f"headless Save Video writes H.264 in MP4 or MKV (format auto, mp4 or mkv; codec "
                                 f"auto or h264), got format {format!r}, codec {codec_name!r}")
            if not isinstance(video, VideoFromComponents):
                raise ValueError("headless Save Video writes videos made by Create Video; connect the frames "
                                 "through Get Video Components and Create Video")
            if video.bit_depth != 8:
                raise ValueError(f"headless Save Video writes 8-bit video; set Create Video's bit_depth to 8, "
                                 f"got {video.bit_depth}")
            h, w = video.images.shape[1:3]
            prefix = filename_prefix.replace("%width%", str(w)).replace("%height%", str(h))
            folder, subfolder, filename, counter = save_target(prefix, folders.output_dir)
            metadata = dict(extra_pnginfo or {})
            if prompt is not None:
                metadata["prompt"] = prompt
            path = atomic_write_new(numbered_names(folder, filename, counter, [], "." + SUFFIXES[format]),
                                    lambda tmp: encode_video(video, Path(tmp), CONTAINERS[format], metadata or None))
            record = {"filename": path.name, "subfolder": subfolder, "type": "output", "path": str(path)}
            folders.written.append(record)
            return {"ui": {"images": [record], "animated": (True,)}, "result": (video,)}

    return {"LoadVideo": LoadVideo, "GetVideoComponents": GetVideoComponents, "CreateVideo": CreateVideo,
            "SaveVideo": SaveVideo}
