"""The training objective: the paper's losses (section 6) plus optional identity terms.

Content loss: MSE between the re-encoded output and the AdaIN target at relu4_1. Style loss:
MSE of channel means plus MSE of channel stds at relu1_1..relu4_1, output vs style. The
statistics are taken in float32 even under autocast: bf16 variances are too coarse.

Identity loss (Park & Lee 2019, SANet; not in the AdaIN paper, off by default): AdaIN of the content
with its own statistics is the content's features, so decoding them should give the content back.
Penalising the difference in pixels and in encoder features at relu1_1..relu4_1 teaches the decoder
to invert the encoder, which the paper's loss alone does not at a CPU's budget: the structure of the
content (faces, cars, text) survives the stylization instead of dissolving into texture.

An optional total-variation term (not in the paper, off by default) damps high-frequency artefacts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adain_nodes.core.stats import adain, mean_std
from adain_nodes.core.layers import ADAIN_LAYER, STYLE_LAYERS
from adain_nodes.models.networks import VGGEncoder


@dataclass(frozen=True)
class LossWeights:
    """How much each term counts; the defaults are the paper's objective."""

    content: float = 1.0
    style: float = 10.0
    tv: float = 0.0
    identity_pixel: float = 0.0
    identity_feature: float = 0.0

    @property
    def identity(self) -> bool:
        return bool(self.identity_pixel or self.identity_feature)


@dataclass
class Losses:
    content: Tensor
    style: Tensor
    tv: Tensor
    identity_pixel: Tensor
    identity_feature: Tensor
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


def feature_distance(features: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Sum over layers of the feature MSE (SANet's second identity term)."""
    return sum((F.mse_loss(f.float(), t.float()) for f, t in zip(features, targets)),
               features[0].new_zeros((), dtype=torch.float32))


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels: large for high-frequency noise, small for edges."""
    image = image.float()
    return ((image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
            + (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean())


def compute_losses(encoder: VGGEncoder, decoder: nn.Module, content: Tensor, style: Tensor,
                   weights: LossWeights = LossWeights()) -> Losses:
    """Forward pass of one training step; ``decoder`` may be wrapped in DistributedDataParallel.

    With identity terms the stylization and the reconstruction go through the decoder and the encoder
    as one batch (one pass each, which DDP needs and which is faster than two).
    """
    with torch.no_grad():
        style_feats = encoder.encode(style, STYLE_LAYERS)
        content_feats = encoder.encode(content, STYLE_LAYERS if weights.identity else (ADAIN_LAYER,))
        target = adain(content_feats[-1].float(), *mean_std(style_feats[-1].float()))
    zero = target.new_zeros(())
    batch = content.shape[0]
    decoder_input = torch.cat([target, content_feats[-1].to(target.dtype)]) if weights.identity else target
    decoded = decoder(decoder_input)
    decoded_feats = encoder.encode(decoded, STYLE_LAYERS)
    output, out_feats = decoded[:batch], [f[:batch] for f in decoded_feats]
    loss_c = F.mse_loss(out_feats[-1].float(), target)
    loss_s = style_loss(out_feats, style_feats)
    loss_tv = total_variation(output) if weights.tv else zero
    loss_ip, loss_if = zero, zero
    if weights.identity:
        reconstruction = decoded[batch:]
        loss_ip = F.mse_loss(reconstruction.float(), content.float())
        loss_if = feature_distance([f[batch:] for f in decoded_feats], content_feats)
    total = (weights.content * loss_c + weights.style * loss_s + weights.tv * loss_tv
             + weights.identity_pixel * loss_ip + weights.identity_feature * loss_if)
    return Losses(loss_c, loss_s, loss_tv, loss_ip, loss_if, total, output)
