"""Inference fast path: the reference layers fused where the result is the same up to float rounding.

Nearest 2x upsampling + reflection-padded 3x3 conv: on a nearest-upsampled image every 3x3 window
covers only 2x2 distinct source pixels, so each of the four output phases is a 2x2 convolution of
the source: 16 instead of 36 multiply-adds per source pixel and channel pair, and no upsampled
copy. Reflection padding by one of the upsampled image equals replicate padding of the source.

Reflection padding alone: a zero-padded convolution (padding done inside oneDNN/cuDNN, no padded
copy) is right everywhere except the one-pixel output border, which is recomputed from thin
reflected strips. That pays where the padded copy costs more than the border convolutions, i.e. on
large maps with few output channels (measured on CPU: -20% at 64 channels 512x512, +8% at 256
channels 128x128), so it is used when the map's short side is at least twice the output channels.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_PADDED_3X3 = dict(kernel_size=(3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)

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


def reflect_conv3x3(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(reflection_pad(x, 1))`` for a 3x3 ``conv``: zero-padded conv, then the border redone."""
    out = F.conv2d(x, conv.weight, conv.bias, padding=1)
    strip = dict(weight=conv.weight, bias=conv.bias)
    out[:, :, :1] = F.conv2d(F.pad(x[:, :, :2], (1, 1, 1, 0), mode="reflect"), **strip)
    out[:, :, -1:] = F.conv2d(F.pad(x[:, :, -2:], (1, 1, 0, 1), mode="reflect"), **strip)
    out[:, :, :, :1] = F.conv2d(F.pad(x[:, :, :, :2], (1, 0, 1, 1), mode="reflect"), **strip)
    out[:, :, :, -1:] = F.conv2d(F.pad(x[:, :, :, -2:], (0, 1, 1, 1), mode="reflect"), **strip)
    return out


def _is_padded_3x3(pad: nn.Module, conv: nn.Module) -> bool:
    return (isinstance(pad, nn.ReflectionPad2d) and tuple(pad.padding) == (1, 1, 1, 1)
            and isinstance(conv, nn.Conv2d)
            and all(getattr(conv, k) == v for k, v in _PADDED_3X3.items()))


def run_fused(layers: Sequence[nn.Module], x: Tensor, stop: int | None = None, taps: tuple[int, ...] = (),
              float32_modules: int = 0) -> tuple[Tensor, dict[int, Tensor]]:
    """Run ``layers[:stop]`` with the fusions above and in-place ReLUs (inference only).

    ``taps`` are module counts (``i`` means the output of ``layers[:i]``) whose outputs are returned too.
    The first ``float32_modules`` modules run in float32 even under autocast.
    """
    if torch.is_grad_enabled():
        raise RuntimeError("run_fused is for inference: it writes in place; use the module's forward to train")
    modules = list(layers)[:stop]
    found: dict[int, Tensor] = {}
    i = 0
    while i < len(modules):
        module, rest = modules[i], modules[i + 1:i + 3]
        exact = i < float32_modules
        with torch.autocast(x.device.type, enabled=False) if exact else contextlib.nullcontext():
            x = x.float() if exact else x
            if isinstance(module, nn.Upsample) and len(rest) == 2 and _is_padded_3x3(*rest) \
                    and module.scale_factor in (2, 2.0, (2.0, 2.0)) and module.mode == "nearest":
                x, i = upsample_conv2d(x, rest[1]), i + 3
            elif rest and _is_padded_3x3(module, rest[0]) and min(x.shape[-2:]) >= max(2, 2 * rest[0].out_channels):
                x, i = reflect_conv3x3(x, rest[0]), i + 2
            elif isinstance(module, nn.ReLU):
                x, i = torch.relu_(x), i + 1
            else:
                x, i = module(x), i + 1
        if i in taps:
            found[i] = x
    return x, found
