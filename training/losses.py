"""The paper's training objective (section 6), written with the pack's own encoder and AdaIN.

Content loss: MSE between the re-encoded output and the AdaIN target at relu4_1. Style loss:
MSE of channel means plus MSE of channel stds at relu1_1..relu4_1, output vs style. The
statistics are taken in float32 even under autocast: bf16 variances are too coarse. An optional
total-variation term (not in the paper, off by default) damps the decoder's high-frequency artefacts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adain_nodes.core.stats import adain, mean_std
from adain_nodes.models.networks import STYLE_LAYERS, VGGEncoder


@dataclass
class Losses:
    content: Tensor
    style: Tensor
    tv: Tensor
    total: Tensor
    output: Tensor


def style_loss_terms(features: list[Tensor], targets: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Per layer, (MSE of channel means, MSE of channel stds): where the style loss comes from."""
    terms = []
    for feat, target in zip(features, targets):
        fm, fs = mean_std(feat.float())
        tm, ts = mean_std(target.float())
        terms.append((F.mse_loss(fm, tm), F.mse_loss(fs, ts)))
    return terms


def style_loss(features: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Sum over layers of MSE(mean) + MSE(std), as in the reference port's ``calc_style_loss``."""
    return sum((m + s for m, s in style_loss_terms(features, targets)), features[0].new_zeros((), dtype=torch.float32))


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels: large for high-frequency noise, small for edges."""
    image = image.float()
    return ((image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
            + (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean())


def compute_losses(encoder: VGGEncoder, decoder: nn.Module, content: Tensor, style: Tensor,
                   content_weight: float = 1.0, style_weight: float = 10.0, tv_weight: float = 0.0) -> Losses:
    """Forward pass of one training step; ``decoder`` may be wrapped in DistributedDataParallel."""
    with torch.no_grad():
        style_feats = encoder.encode(style, STYLE_LAYERS)
        content_feat = encoder.encode(content)[0]
        target = adain(content_feat.float(), *mean_std(style_feats[-1].float()))
    output = decoder(target)
    out_feats = encoder.encode(output, STYLE_LAYERS)
    loss_c = F.mse_loss(out_feats[-1].float(), target)
    loss_s = style_loss(out_feats, style_feats)
    loss_tv = total_variation(output) if tv_weight else loss_c.new_zeros(())
    total = content_weight * loss_c + style_weight * loss_s + tv_weight * loss_tv
    return Losses(loss_c, loss_s, loss_tv, total, output)
