"""Shared pieces of the node layer: category, socket types, host access."""
from __future__ import annotations

import torch

from ..core.image import image_to_nchw, nchw_to_image
from ..host import get_runtime
from ..core.layers import GRID
from ..refine import MAX_STEPS as REFINE_MAX_STEPS
from ..tiling import MAX_OVERLAP, MIN_TILE_SIZE, Tiling

CATEGORY = "style_transfer/AdaIN"
ENCODER = "ADAIN_ENCODER"
DECODER = "ADAIN_DECODER"
# The model inputs the one-call nodes share (the modular nodes word their tooltips for their place in a graph).
ENCODER_INPUT = (ENCODER, {"tooltip": "From AdaIN Encoder Loader."})
DECODER_INPUT = (DECODER, {"tooltip": "From AdaIN Decoder Loader."})
FEATURES = "ADAIN_FEATURES"
STYLE = "ADAIN_STYLE"

ALPHA_INPUT = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                         "tooltip": "Content-style trade-off: 0 keeps the content, 1 is the full style."})

DETAIL_INPUT = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                          "tooltip": "Adds the content's own fine edges (a detail layer of its brightness, from an "
                                     "edge-aware filter) to the result, on brightness only, so the style's colours "
                                     "stay: crisper faces, text and outlines. 0 leaves the decoder's output as it is."})

BOOST_INPUT = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                         "tooltip": "More style than alpha 1 gives: a first transfer measures what the decoder "
                                    "misses of the style's statistics, and a second asks this fraction past them. "
                                    "0.5 is the measured sweet spot (about 15 % more style; 1 overshoots); about "
                                    "twice the time. 0: one transfer."})

REFINE_INPUT = ("INT", {"default": 0, "min": 0, "max": REFINE_MAX_STEPS, "step": 1,
                         "tooltip": "More style than alpha 1 gives: this many gradient steps on the paper's own loss "
                                    "adjust what AdaIN asks of the decoder for this picture. 1 step: a quarter to a "
                                    "third more style (at alpha 1) for 3-4x the time; 2 steps 5-7x. 0: off."})

TILE_INPUTS = {
    "tile_size": ("INT", {"default": 1024, "min": 0, "max": 16384, "step": MIN_TILE_SIZE,
                          "tooltip": "Images with a side longer than this are processed in tiles of this size, so "
                                     "memory stays bounded (4K, 8K). 0 never tiles. Statistics are still taken over "
                                     "the whole image."}),
    "tile_overlap": ("INT", {"default": 64, "min": 0, "max": MAX_OVERLAP, "step": GRID,
                             "tooltip": "Pixels each decoded tile reaches into its neighbours; the overlaps are "
                                        "cross-faded so no seams show (64 hides them). Encoded tiles always take the "
                                        "encoder's whole receptive field, so features are exact at any overlap."}),
}

__all__ = ["CATEGORY", "ENCODER", "DECODER", "FEATURES", "STYLE", "ALPHA_INPUT", "BOOST_INPUT", "REFINE_INPUT",
           "DETAIL_INPUT", "TILE_INPUTS", "get_runtime", "to_network", "to_host", "tiling"]


def tiling(tile_size: int, tile_overlap: int) -> Tiling:
    return Tiling(int(tile_size), int(tile_overlap))


def to_network(image: torch.Tensor, name: str) -> torch.Tensor:
    return image_to_nchw(image, name)


def to_host(image: torch.Tensor) -> torch.Tensor:
    return nchw_to_image(image).float()
