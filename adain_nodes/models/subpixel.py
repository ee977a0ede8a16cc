"""Nearest 2x upsampling fused into the reflection-padded 3x3 convolution that follows it.

On a nearest-upsampled image every 3x3 window covers only 2x2 distinct source pixels, so each of
the four output phases is a 2x2 convolution of the source: 16 instead of 36 multiply-adds per
source pixel and channel pair, and no upsampled copy. Reflection padding by one of the upsampled
image equals replicate padding of the source. The result equals the reference layers up to float
rounding (the kernel taps are summed before multiplying).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# For output phase a (row 2i+a), the 3 kernel rows fall on source rows (i-1+a, i+a): which rows add up.
_PHASE_ROWS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                            [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def phase_weights(weight: Tensor) -> Tensor:
    """``[O, I, 3, 3]`` kernel -> ``[4*O, I, 2, 2]``: one 2x2 kernel per output phase (row, column)."""
    rows = _PHASE_ROWS.to(weight)
    kernels = torch.einsum("aur,oirs,bvs->aboiuv", rows, weight, rows)
    return kernels.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def upsample_conv2d(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(reflection_pad(upsample_nearest_2x(x), 1))`` without building the upsampled image."""
    out_channels = conv.out_channels
    batch, _, height, width = x.shape
    bias = conv.bias.repeat(4) if conv.bias is not None else None
    phases = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), phase_weights(conv.weight), bias)
    out = torch.empty((batch, out_channels, 2 * height, 2 * width), dtype=phases.dtype, device=phases.device,
                      memory_format=torch.channels_last)
    for a in (0, 1):
        for b in (0, 1):
            k = (2 * a + b) * out_channels
            out[:, :, a::2, b::2] = phases[:, k:k + out_channels, a:a + height, b:b + width]
    return out
