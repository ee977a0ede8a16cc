"""The content's own edges, added back to a stylized image: a detail layer of the content's luminance.

The decoder draws the content's edges softly (its receptive field smears them over a few pixels, at
any image size), where a sharper method draws them crisp. The detail layer is the content's luminance
minus an edge-aware smoothing of it, a self-guided filter (He, Sun & Tang 2010): in flat and weakly
textured windows (variance well below ``eps``) the smoothing is a box mean, so the layer is the fine
detail there; across strong edges the filter keeps the edge, so the layer holds little of it and
adding it does not draw the halos an unsharp mask draws. Added to R, G and B alike it changes the
luminance only (BT.601 luma weights sum to 1): the style's colours stay. All of it is local (a few
box means with the given radius), per image and per frame, so it works at any size and on video.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .color import luminance

DETAIL_RADIUS = 2  # px: the decoder's blur is a few pixels wide whatever the image size
DETAIL_EPS = 0.04  # (0.2)^2: edges of more than about 0.2 contrast stay in the smooth layer (no halos there);
# 0.01 kept too many of the edges the decoder smears (faces, text) out of the layer on the decision half's sheets


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean of each ``(2r+1)^2`` window of ``[B, C, H, W]``, over the pixels inside the image at the borders."""
    if radius <= 0:
        return x
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide: Tensor, source: Tensor, radius: int, eps: float) -> Tensor:
    """He et al.'s guided filter of ``source`` by a single-channel ``guide`` (both ``[B, 1, H, W]``)."""
    mean_g, mean_s = box_mean(guide, radius), box_mean(source, radius)
    var_g = box_mean(guide * guide, radius) - mean_g * mean_g
    cov = box_mean(guide * source, radius) - mean_g * mean_s
    a = cov / (var_g + eps)
    b = mean_s - a * mean_g
    return box_mean(a, radius) * guide + box_mean(b, radius)


def content_detail(content: Tensor, radius: int = DETAIL_RADIUS, eps: float = DETAIL_EPS) -> Tensor:
    """The detail layer ``[B, 1, H, W]`` of RGB ``[B, 3, H, W]`` content: its luminance minus the self-guided
    filter of it (computed in float32 whatever the input's precision)."""
    y = luminance(content.float())
    return y - guided_filter(y, y, radius, eps)


def add_content_detail(image: Tensor, content: Tensor, strength: float, radius: int = DETAIL_RADIUS,
                       eps: float = DETAIL_EPS) -> Tensor:
    """``image`` (RGB ``[B, 3, H, W]`` in 0..1) plus ``strength`` x the content's detail layer, on the luminance
    only; ``content`` has the image's size and a batch of 1 or B. Strength 0 returns ``image`` itself."""
    if not math.isfinite(strength) or strength < 0:
        raise ValueError(f"the detail strength must be a finite number >= 0, got {strength!r}")
    if strength == 0:
        return image
    if content.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"the content is {content.shape[-1]}x{content.shape[-2]} but the image is "
                         f"{image.shape[-1]}x{image.shape[-2]}; the detail layer needs both at one size")
    if content.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"a content batch of {content.shape[0]} for {image.shape[0]} images: give 1 or "
                         f"{image.shape[0]}")
    count = image.shape[0]
    out = torch.empty_like(image)
    for i in range(count):  # one image at a time: a few full-size single-channel planes, even for long videos
        detail = content_detail(content[i if content.shape[0] > 1 else 0][None].to(image.device), radius, eps)
        out[i] = (image[i].float() + strength * detail[0]).clamp(0.0, 1.0).to(image.dtype)
    return out
