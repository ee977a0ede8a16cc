"""AdaIN Video Style Transfer: a clip's frames stylized so they hold still (adain_nodes/video.py does the maths)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import pipeline
from ..video import Stability, stylize_video
from .common import (ALPHA_INPUT, BOOST_INPUT, CATEGORY, DECODER_INPUT, ENCODER_INPUT, REFINE_INPUT, TILE_INPUTS,
                     get_runtime, tiling, to_network)

_DEFAULTS = Stability()


class HostFrames(Sequence[torch.Tensor]):
    """A host IMAGE batch ``[N, H, W, C]`` seen as network frames, validated and converted a chunk at a time:
    converting a 300-frame 1280x720 clip whole would copy its 3.3 GB (and check it in another 0.8 GB)."""

    def __init__(self, image: torch.Tensor, name: str) -> None:
        batch = isinstance(image, torch.Tensor) and image.dim() == 4
        to_network(image[:1] if batch else image, name)  # a bad type or shape is refused here, before any work
        self.image, self.name = (image if batch else image[None]), name

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def __getitem__(self, index: int | slice) -> torch.Tensor:
        if isinstance(index, slice):
            return to_network(self.image[index], self.name)
        return to_network(self.image[index:index + 1 or None], self.name)[0]


class AdaINVideoStyleTransfer:
    DISPLAY_NAME = "AdaIN Video Style Transfer"
    DESCRIPTION = ("Stylizes consecutive frames (a video's images from Get Video Components, or any IMAGE batch) "
                   "without the shimmer of stylizing each frame alone: frames are kept on the networks' grid as "
                   "the camera moves, AdaIN uses content statistics pooled over recent frames, and optionally the "
                   "previous output is blended in where the same surface is seen. Memory stays bounded for long "
                   "clips (frames are processed in chunks); Cancel stops between frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The stylized frames, as many and as large as the input's.",)
    FUNCTION = "transfer"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": ENCODER_INPUT,
            "decoder": DECODER_INPUT,
            "frames": ("IMAGE", {"tooltip": "Consecutive frames of one clip, all of one size (e.g. Get Video "
                                            "Components' images)."}),
            "style_image": ("IMAGE", {"tooltip": "The style: one image for the whole clip (or one per frame)."}),
            "alpha": ALPHA_INPUT,
            "preserve_color": (list(pipeline.COLOR_MODES), {
                "default": "off",
                "tooltip": "off: take the style's colours. match style colors: recolour the style to the first "
                           "frame's colours. luminance only: stylize brightness, keep the frames' colours."}),
            "align_to_motion": ("BOOLEAN", {
                "default": _DEFAULTS.align,
                "tooltip": "Estimate the camera's motion between frames and keep the picture on the networks' "
                           "8-pixel grid: removes most of the flicker of pans at a few % of the time."}),
            "pool_frames": ("INT", {
                "default": _DEFAULTS.pool_window, "min": 1, "max": 256,
                "tooltip": "Normalise by content statistics pooled over this many recent frames, so the picture "
                           "does not pump as things enter and leave. 1: each frame's own (per-frame AdaIN)."}),
            "temporal_smoothing": ("FLOAT", {
                "default": _DEFAULTS.smoothing, "min": 0.0, "max": 0.95, "step": 0.05,
                "tooltip": "Blend in this much of the previous output, moved with the camera, only where the "
                           "frames show the same surface (moving objects never ghost). 0: off."}),
            **TILE_INPUTS,
        }, "optional": {
            "style_boost": BOOST_INPUT,
            "style_refine": ("INT", {**REFINE_INPUT[1], "tooltip": REFINE_INPUT[1]["tooltip"] + " Measured once, on "
                                     "the first frame, for the whole clip."}),
        }}

    def transfer(self, encoder, decoder, frames, style_image, alpha, preserve_color="off",
                 align_to_motion=_DEFAULTS.align, pool_frames=_DEFAULTS.pool_window,
                 temporal_smoothing=_DEFAULTS.smoothing, tile_size=1024, tile_overlap=64, style_boost=0.0,
                 style_refine=0):
        clip = HostFrames(frames, "frames")
        style = to_network(style_image, "style_image")
        stability = Stability(bool(align_to_motion), int(pool_frames), float(temporal_smoothing))
        styled = stylize_video(encoder, decoder, clip, style, get_runtime(), alpha, preserve_color, stability,
                               tiling(tile_size, tile_overlap), boost=style_boost, refine=style_refine)
        return (styled.permute(0, 2, 3, 1),)  # already in 0..1 and laid out as an IMAGE: to_host would copy it
