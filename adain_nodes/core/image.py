"""Conversions between the host's image layout ([B, H, W, C] in 0..1) and network tensors."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import AdaINInputError
from .layers import GRID, MIN_SIZE

log = logging.getLogger(__name__)


def image_to_nchw(image: Tensor, name: str = "image") -> Tensor:
    """Validate a host IMAGE and return RGB ``[B, 3, H, W]`` float32 in 0..1.

    Greyscale is repeated to RGB, alpha is dropped, values outside 0..1 are clipped (with a
    warning); NaN or Inf is an error, since it would silently poison every output pixel.
    """
    if not isinstance(image, torch.Tensor):
        raise AdaINInputError(f"{name}: expected an IMAGE tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise AdaINInputError(f"{name}: expected an IMAGE of shape [batch, height, width, channels], "
                              f"got shape {list(image.shape)}")
    b, h, w, c = image.shape
    if b == 0 or h == 0 or w == 0:
        raise AdaINInputError(f"{name}: the image batch is empty (shape {list(image.shape)}); "
                              "connect an image with at least one pixel")
    if c not in (1, 2, 3, 4):
        raise AdaINInputError(f"{name}: expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels "
                              f"in the last dimension, got {c} (shape {list(image.shape)})")
    image = image.float()
    if not torch.isfinite(image).all():
        raise AdaINInputError(f"{name}: the image contains NaN or infinite values; fix the node that "
                              "produced it (for example a division by zero upstream)")
    if c in (1, 2):
        image = image[..., :1].expand(-1, -1, -1, 3)
    elif c == 4:
        image = image[..., :3]
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        log.warning("%s: values range %.3g..%.3g, outside 0..1; clipping", name, lo, hi)
        image = image.clamp(0.0, 1.0)
    return image.permute(0, 3, 1, 2).contiguous()


def nchw_to_image(tensor: Tensor) -> Tensor:
    """Network output ``[B, 3, H, W]`` to a host IMAGE ``[B, H, W, 3]`` clipped to 0..1."""
    return tensor.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()


def pad_for_encoder(image: Tensor) -> Tensor:
    """Pad ``[B, C, H, W]`` at the bottom/right to a multiple of GRID (at least MIN_SIZE) for the encoder.

    Reflection keeps edges natural; replication is used where the image is too small to reflect.
    """
    h, w = image.shape[-2:]
    th = max(MIN_SIZE, -(-h // GRID) * GRID)
    tw = max(MIN_SIZE, -(-w // GRID) * GRID)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(image, (0, pw, 0, ph), mode=mode)


def batch_index(count: int, other: int, name: str, other_name: str) -> list[int]:
    """Which item of a batch of ``other`` goes with each of ``count`` items: 1 applies to all, equal pairs."""
    if other == count:
        return list(range(count))
    if other == 1:
        return [0] * count
    raise AdaINInputError(f"{other_name} has a batch of {other} but {name} has {count}: give {other_name} "
                          f"a batch of 1 (applied to every item) or exactly {count} (paired in order)")


def mask_to_size(mask: Tensor, count: int, size: tuple[int, int], name: str = "mask", area: bool = False) -> Tensor:
    """A host MASK ``[B, H, W]`` (or ``[H, W]``) as soft weights ``[count, 1, *size]`` in 0..1.

    A batch of 1 applies to every item, an equal batch pairs up. Another size is stretched
    bilinearly, or with ``area`` as the covered fraction of each target cell (an image mask on a
    latent grid: cells wholly outside the mask stay exactly 0).
    """
    if not isinstance(mask, torch.Tensor):
        raise AdaINInputError(f"{name}: expected a MASK tensor, got {type(mask).__name__}")
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.dim() != 3 or 0 in mask.shape:
        raise AdaINInputError(f"{name}: expected a MASK of shape [batch, height, width], got {list(mask.shape)}")
    mask = mask.float()
    if not torch.isfinite(mask).all():
        raise AdaINInputError(f"{name}: the mask contains NaN or infinite values")
    mask = mask.clamp(0.0, 1.0)
    index = batch_index(count, mask.shape[0], "the images", name)
    weight = mask.unsqueeze(1)
    if tuple(weight.shape[-2:]) != tuple(size) and area:
        weight = F.interpolate(weight, size=size, mode="area")
    elif tuple(weight.shape[-2:]) != tuple(size):
        weight = F.interpolate(weight, size=size, mode="bilinear", align_corners=False, antialias=True)
    return weight.clamp(0.0, 1.0)[index]


def mask_to_weight(mask: Tensor, count: int, image_size: tuple[int, int], feature_size: tuple[int, int],
                   name: str = "mask") -> Tensor:
    """A host MASK ``[B, H, W]`` (or ``[H, W]``) as soft weights ``[count, 1, h, w]`` on the feature grid.

    The mask is stretched to the encoded image's size, padded like the image, then reduced to
    the feature grid, so region boundaries land where they are in the picture.
    """
    weight = pad_for_encoder(mask_to_size(mask, count, image_size, name))
    weight = F.interpolate(weight, size=feature_size, mode="area")
    return weight.clamp(0.0, 1.0)
