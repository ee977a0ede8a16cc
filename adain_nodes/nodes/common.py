"""Shared pieces of the node layer: category, socket types, host access."""
from __future__ import annotations

import torch

from ..core.image import image_to_nchw, nchw_to_image
from ..host import get_runtime

CATEGORY = "style_transfer/AdaIN"
ENCODER = "ADAIN_ENCODER"
DECODER = "ADAIN_DECODER"
FEATURES = "ADAIN_FEATURES"
STYLE = "ADAIN_STYLE"

ALPHA_INPUT = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                         "tooltip": "Content-style trade-off: 0 keeps the content, 1 is the full style."})

__all__ = ["CATEGORY", "ENCODER", "DECODER", "FEATURES", "STYLE", "ALPHA_INPUT", "get_runtime", "to_network",
           "to_host"]


def to_network(image: torch.Tensor, name: str) -> torch.Tensor:
    return image_to_nchw(image, name)


def to_host(image: torch.Tensor) -> torch.Tensor:
    return nchw_to_image(image).float()
