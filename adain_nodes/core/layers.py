"""The encoder's named layers in one table: where each one is, how wide, and how far downsampled.

Networks, pipeline, tiling, image padding, presets and training read this table instead of spelling
"relu4_1", 512 channels or a factor of 8 themselves, so a decoder fed at other levels needs no
second copy of these facts.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderLayer:
    name: str
    end: int  # index one past the layer's ReLU in the reference port's VGG19 nn.Sequential
    channels: int
    stride: int  # image pixels per feature pixel: 2 to the number of max-pools before the layer


ENCODER_LAYERS: dict[str, EncoderLayer] = {layer.name: layer for layer in (
    EncoderLayer("relu1_1", 4, 64, 1),
    EncoderLayer("relu2_1", 11, 128, 2),
    EncoderLayer("relu3_1", 18, 256, 4),
    EncoderLayer("relu4_1", 31, 512, 8),
)}
# The layer whose statistics AdaIN transfers and the decoder inverts (the paper's choice).
ADAIN_LAYER = "relu4_1"
# Shallower levels the skip decoder also takes by default, AdaIN'd like ADAIN_LAYER (Avatar-Net and AdaAttN feed
# shallower levels for the same reason): relu4_1 alone, at 1/8 resolution, carries little of the content's structure.
# A decoder declares its own levels (``levels``); styles carry every level of this table.
SKIP_LAYERS = ("relu3_1", "relu2_1")
# The layers of the paper's style loss.
STYLE_LAYERS = tuple(ENCODER_LAYERS)
# Image pixels per feature pixel of the AdaIN layer: images are padded to a multiple of it (so decoded pixels align
# with the input's), tiles and training crops are cut on it.
GRID = ENCODER_LAYERS[ADAIN_LAYER].stride
# The networks' reflection padding needs at least 2 features a side at the AdaIN layer: the smallest image.
MIN_SIZE = 2 * GRID
# Activation bytes per image pixel while a network runs: the widest full-resolution layer, in float32, about four
# times over (input, output and padded copy of a convolution, with slack for the allocator).
BYTES_PER_PIXEL = max(layer.channels for layer in ENCODER_LAYERS.values() if layer.stride == 1) * 4 * 4
