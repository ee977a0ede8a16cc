"""style_refine: a few gradient steps on the paper's own loss, for one content image, on what AdaIN asks of the decoder.

A feed-forward decoder is trained for all pictures at once, so on any one picture it lands short of its own
objective: its output misses the style's statistics by a pattern that depends on the content (docs/training.md, stops
36-37), and a convolution cannot see a whole picture to correct it. style_boost corrects that pattern once, by a
fixed rule. Refining instead descends the paper's loss (content loss at the AdaIN layer + ``STYLE_WEIGHT`` x the
mean/std style loss at every level) with respect to the AdaIN targets: each channel's mean and std at every level the
decoder takes. Only those few thousand numbers change; the networks are fixed and the result is a style (statistics),
so the final transfer is the pipeline's own (any alpha, tiles, masks). Measured (decision half, 256 px, the stop-39
default, alpha 1): one transfer 14.8x at SSIM 0.540; one step 18.2x at 0.510; two 20.2x at 0.495; four 23.7x at 0.486.

Networks and trainer stay free of it; this module holds only the optimisation, on plain tensors.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core.layers import ADAIN_LAYER, STYLE_LAYERS
from .core.stats import adain, style_loss_per_image

log = logging.getLogger(__name__)

STYLE_WEIGHT = 10.0  # the paper's loss: content + 10 x style (the reference port's default)
STEP_SIZE = 0.03  # Adam's step on each channel's log std scale and on its mean shift (in units of the level's std)
MAX_STEPS = 8  # each step costs about two to three transfers; past four the gain per step falls
# The optimisation runs on the whole image with gradients: about 7 KB a pixel in float32 (measured on the CPU at
# 0.26 and 0.52 MP: 1.9 and 3.6 GB above the models). Larger images are refined on a copy scaled down to MAX_PIXELS
# and their targets applied at full size; on out-of-memory the copy is halved, down to MIN_PIXELS.
BYTES_PER_PIXEL = 7 * 1024
MAX_PIXELS = 512 * 1024
MIN_PIXELS = 64 * 64

Stats = dict[str, tuple[Tensor, Tensor]]


def _trainable_copy(network: nn.Module, device: torch.device) -> nn.Module:
    """A float32 copy that autograd can run through: weights loaded under inference mode (as ComfyUI runs nodes)
    cannot be saved for backward, their clones can. channels_last, with the image, as the pipeline runs: with bf16
    autocast a step takes half the time of a contiguous float32 one (measured at 512 px on the CPU)."""
    twin = copy.deepcopy(network).float().to(device, memory_format=torch.channels_last)
    for parameter in twin.parameters():
        parameter.requires_grad_(False)
    return twin


def refine_targets(encoder: nn.Module, decoder: nn.Module, pictures: Sequence[tuple[Tensor, Stats]], steps: int,
                   device: torch.device, dtype: torch.dtype = torch.float32,
                   after_each: Callable[[], None] = lambda: None) -> list[Stats]:
    """For each ``(content, style)`` picture, the AdaIN targets (mean, std ``[1, C]``) for each of ``decoder.levels``
    after ``steps`` Adam steps on the paper's loss of decoding ``content`` (``[1, 3, H, W]``, padded to the encoder's
    grid) with them, against ``style``'s statistics at every STYLE_LAYERS level. Each starts from its style's own
    statistics; the networks are copied for autograd once for all of them, and run autocast to ``dtype`` (bf16 where
    training uses it: the losses, statistics and steps stay float32). ``after_each`` runs after each picture (the
    host's interrupt check)."""
    refined = []
    with torch.inference_mode(False), torch.enable_grad():
        vgg, net = _trainable_copy(encoder, device), _trainable_copy(decoder, device)
        for content, style in pictures:
            refined.append(_refined(vgg, net, content, style, steps, device, dtype))
            after_each()
    return refined


def _refined(vgg: nn.Module, net: nn.Module, content: Tensor, style: Stats, steps: int, device: torch.device,
             dtype: torch.dtype) -> Stats:
    levels = tuple(net.levels)
    image = content.to(device, torch.float32).clone(memory_format=torch.channels_last)
    lowered = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    aims = {name: tuple(t.to(device, torch.float32).clone() for t in style[name]) for name in STYLE_LAYERS}
    with torch.no_grad(), lowered:  # as the pipeline encodes (its fused path, in its precision)
        own = dict(zip(STYLE_LAYERS, (f.float() for f in vgg.encode(image, STYLE_LAYERS, fast=True))))
        content_target = adain(own[ADAIN_LAYER], *aims[ADAIN_LAYER])
    shift = {name: torch.zeros_like(aims[name][0], requires_grad=True) for name in levels}
    scale = {name: torch.zeros_like(aims[name][1], requires_grad=True) for name in levels}
    optimizer = torch.optim.Adam([*shift.values(), *scale.values()], lr=STEP_SIZE)

    def targets() -> Stats:
        return {name: (aims[name][0] + shift[name] * aims[name][1].mean(), aims[name][1] * scale[name].exp())
                for name in levels}

    for step in range(steps):
        asked = targets()
        with lowered:
            output = net(*(adain(own[name], *asked[name]) for name in levels)).float().clamp(0.0, 1.0)
            features = [f.float() for f in vgg.encode(output, STYLE_LAYERS)]
        content_loss = F.mse_loss(features[STYLE_LAYERS.index(ADAIN_LAYER)], content_target)
        style_loss = style_loss_per_image(features, [aims[name] for name in STYLE_LAYERS]).sum()
        loss = content_loss + STYLE_WEIGHT * style_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"style_refine: the loss is {float(loss)} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.debug("style_refine step %d: content loss %.4f, style loss %.4f", step + 1, content_loss.item(),
                  style_loss.item())
    return {name: (mean.detach(), std.detach()) for name, (mean, std) in targets().items()}
