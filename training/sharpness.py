"""Edge sharpness: how much of the content's edge contrast a stylized output still draws, as a number.

SSIM to the content rises when the output keeps the content's structure, but a soft, smeared copy of
an edge scores nearly as well as a crisp one. This measure looks only at the content's strongest
edges (its top ``EDGE_FRACTION`` of pixels by luminance gradient) and asks how steep the output is
there *across* each edge: the output's gradient projected on the content's gradient direction,
summed over those pixels, over the content's own gradient magnitude summed there. 1 is the photo's own
edge contrast; a blurred copy scores lower; style strokes that run along an edge or are oriented at
random count little. Finite differences on the luminance at full resolution (Sobel), so it sees
the pixel-scale softness the sheets show.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from adain_nodes.core.color import luminance

EDGE_FRACTION = 0.1  # the content's strongest 10% of pixels by gradient magnitude are its edges


def sobel(gray: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal and vertical Sobel derivatives of ``[B, 1, H, W]`` (replicate padding), per pixel step."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=gray.dtype,
                      device=gray.device) / 8
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx[None, None]), F.conv2d(padded, kx.t()[None, None])


def edge_sharpness(output: Tensor, content: Tensor, fraction: float = EDGE_FRACTION) -> Tensor:
    """Per image of RGB ``[B, 3, H, W]`` ``output`` and ``content``: the output's luminance gradient across the
    content's strongest edges over the content's own (see the module doc)."""
    cx, cy = sobel(luminance(content.double()))
    ox, oy = sobel(luminance(output.double()))
    magnitude = torch.sqrt(cx * cx + cy * cy).flatten(1)
    across = ((ox * cx + oy * cy).abs().flatten(1)) / magnitude.clamp_min(1e-12)
    count = max(1, round(fraction * magnitude.shape[1]))
    top = magnitude.topk(count, dim=1).indices
    return (across.gather(1, top).sum(dim=1) / magnitude.gather(1, top).sum(dim=1).clamp_min(1e-12)).float()
