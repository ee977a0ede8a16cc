"""The training objective: the paper's losses (section 6) plus optional identity terms.

Content loss: MSE between the re-encoded output and the AdaIN target at relu4_1. Style loss:
MSE of channel means plus MSE of channel stds at relu1_1..relu4_1, output vs style. The
statistics are taken in float32 even under autocast: bf16 variances are too coarse.

Identity loss (Park & Lee 2019, SANet; not in the AdaIN paper, off by default): AdaIN of the content
with its own statistics is the content's features, so decoding them should give the content back.
Penalising the difference in pixels and in encoder features at relu1_1..relu4_1 teaches the decoder
to invert the encoder, which the paper's loss alone does not at a CPU's budget: the structure of the
content (faces, cars, text) survives the stylization instead of dissolving into texture. SANet also
reconstructs the style image from its own features (``identity_style``): the decoder then learns to
paint a style's colours and strokes when the features carry its statistics, which the content images
alone never show it.

Optional content loss at the skip levels (not in the paper, off by default): a skip decoder takes AdaIN'd features at
shallower levels too, and its output should have them, as the paper asks at relu4_1. At each level the target has the
style's channel statistics and the content's arrangement, so the term asks for the content's structure (edges,
lettering) where the style loss has nothing to say about arrangement, without pulling the statistics away from the
style's. Each level has its own weight: the finest levels hold the edges SSIM and the eye look at, relu3_1 mostly the
coarse texture the style loss asks for. ``Losses.skip_content`` is the weighted sum, as it enters the total.

An optional total-variation term (not in the paper, off by default) damps high-frequency artefacts.

An optional stability term (Wang et al., AAAI 2020, compound regularisation; Gupta et al., ICCV 2017; off by
default) teaches the decoder to move with the picture: the content shifted by a few pixels that are not a multiple of
the encoder's 8-px grid, plus a little noise, must decode to the shifted output of the content. Video then flickers
less without optical flow (adain_nodes/video.py fights the same flicker at inference).

Optional image balancing of the style loss (not in the paper, off by default): the plain mean over a batch lets the
styles with the largest losses (saturated colours, big strokes) steer the gradient, while the evaluation counts each
pair's ratio alike (a geometric mean). ``image_balanced`` divides each image's gradient by its own loss.

Optional channel balancing of the style loss (not in the paper, off by default): a few channels with a large
spread of their std over styles (relu2_1 #123, a pale-cyan detector, carries about 90 % of relu2_1's std term)
dominate the plain MSE, so the decoder spends its capacity on them. ``std_error_weights`` weighs each channel's
squared std error by its typical spread over the style set to the power ``-2 * balance``: 0 is the paper, 1 counts
each channel's error in units of its own spread.

An optional colour term (not in the paper, off by default) matches the output's distribution of RGB
colours to the style's, as a sliced Wasserstein distance: mean/std statistics cannot tell blue and
yellow strokes from green, their blend. Measured (docs/training.md), it lowers its own distance but
not the pale cyan that relu2_1 channel #123 turns into most of the style loss on Starry Night.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adain_nodes.core.stats import adain, corrected_statistics, mean_std, style_loss_per_image
from adain_nodes.core.layers import ADAIN_LAYER, ENCODER_LAYERS, STYLE_LAYERS
from adain_nodes.models.networks import VGGEncoder


@dataclass(frozen=True)
class LossWeights:
    """How much each term counts; the defaults are the paper's objective."""

    content: float = 1.0
    style: float = 10.0
    tv: float = 0.0
    identity_pixel: float = 0.0
    identity_feature: float = 0.0
    identity_style: bool = False
    colour: float = 0.0
    stability: float = 0.0
    style_image_balance: bool = False
    skip_content: Mapping[str, float] = field(default_factory=dict)  # skip level -> weight of its content loss
    teacher: float = 0.0
    teacher_boost: float = 0.5

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
    colour: Tensor
    stability: Tensor
    skip_content: Tensor
    teacher: Tensor
    total: Tensor
    output: Tensor


def style_loss_terms(features: list[Tensor], targets: list[Tensor],
                     std_weights: list[Tensor] | None = None) -> list[tuple[Tensor, Tensor]]:
    """Per layer, (MSE of channel means, MSE of channel stds): where the style loss comes from. ``std_weights``
    (per layer, one weight per channel, mean 1) weigh the std errors; None is the paper's plain MSE."""
    terms = []
    for i, (feat, target) in enumerate(zip(features, targets)):
        fm, fs = mean_std(feat, dtype=torch.float32)
        tm, ts = mean_std(target, dtype=torch.float32)
        if std_weights is None:
            std_term = F.mse_loss(fs, ts)
        else:
            std_term = ((fs - ts).pow(2) * std_weights[i].to(fs.device)).mean()
        terms.append((F.mse_loss(fm, tm), std_term))
    return terms


def statistics(maps: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Per layer, the float32 channel (mean, std) of ``maps``."""
    return [mean_std(f, dtype=torch.float32) for f in maps]


def style_loss(features: list[Tensor], targets: list[Tensor], std_weights: list[Tensor] | None = None) -> Tensor:
    """Sum over layers of MSE(mean) + MSE(std), as in the reference port's ``calc_style_loss``."""
    return style_loss_per_image(features, statistics(targets), std_weights).mean()


def image_balanced(per_image: Tensor) -> Tensor:
    """The mean of ``per_image`` losses with the gradient of their mean log times their mean: each image's gradient
    is divided by its own loss (detached), so every pair counts alike, as in the evaluation's geometric mean of
    ratios, while the value and the gradient's scale stay the plain mean's."""
    scale = (per_image.mean() / per_image.clamp_min(1e-12)).detach()
    return (per_image * scale).mean()


SPREAD_FLOOR = 0.05  # fraction of a layer's median spread below which a channel counts as that floor (dead channels)


@torch.no_grad()
def channel_spreads(encoder: VGGEncoder, styles: Tensor, chunk: int = 16) -> list[Tensor]:
    """Per style layer, each channel's spread (std over ``styles``) of its feature std: how much that statistic
    varies from style to style."""
    stds = [[] for _ in STYLE_LAYERS]
    for part in styles.split(chunk):
        for i, feat in enumerate(encoder.encode(part, STYLE_LAYERS)):
            stds[i].append(mean_std(feat, dtype=torch.float32)[1])
    return [torch.cat(s).std(dim=0) for s in stds]


def std_error_weights(spreads: list[Tensor], balance: float) -> list[Tensor]:
    """Per layer, ``spread ** (-2 * balance)`` (spreads floored at SPREAD_FLOOR x the layer's median), normalised
    to mean 1 so the layer's std term keeps its scale: balance 0 gives all ones (the paper)."""
    weights = []
    for spread in spreads:
        floored = spread.double().clamp_min(SPREAD_FLOOR * spread.double().median())
        w = floored.pow(-2.0 * balance)
        weights.append((w / w.mean()).float())
    return weights


def mse(a: Tensor, b: Tensor) -> Tensor:
    """``F.mse_loss`` in float32, walked in the tensors' memory order: on CPUs torch's mse_loss (and its backward) of
    channels_last maps walks them in NCHW order, 2.7x slower at relu1_1 (4x64x192x192: 111 ms against 42 ms)."""
    a, b = a.float(), b.float()
    if a.dim() == 4 and a.stride(1) == 1 and b.stride(1) == 1 and a.shape[1] > 1:  # channels innermost: NHWC order
        a, b = a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)
    return F.mse_loss(a, b)


def feature_distance(features: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Sum over layers of the feature MSE (SANet's second identity term)."""
    return sum((mse(f, t) for f, t in zip(features, targets)), features[0].new_zeros((), dtype=torch.float32))


@functools.lru_cache(maxsize=None)
def _sphere_directions(count: int) -> Tensor:
    """``count`` unit vectors spread evenly over the sphere (Fibonacci lattice): fixed, so no RNG state."""
    i = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / count
    angle = math.pi * (1.0 + math.sqrt(5.0)) * i
    r = (1.0 - z * z).sqrt()
    return torch.stack([r * angle.cos(), r * angle.sin(), z]).float()


COLOUR_DIRECTIONS = 32


def colour_distance(image: Tensor, target: Tensor, directions: int = COLOUR_DIRECTIONS) -> Tensor:
    """Sliced Wasserstein-2 distance between the RGB colours of each image and its target, batch mean.

    The colours are projected onto fixed directions and sorted; the squared differences of the sorted
    projections (the quantiles) compare whole colour distributions, not just their moments. Images of
    different sizes are compared at the smaller one's number of quantiles.
    """
    dirs = _sphere_directions(directions).to(image.device)
    proj = [torch.einsum("bcn,ck->bkn", x.float().flatten(2), dirs).sort(dim=-1).values for x in (image, target)]
    count = min(p.shape[-1] for p in proj)
    proj = [p if p.shape[-1] == count else F.interpolate(p, size=count, mode="linear", align_corners=True)
            for p in proj]
    return F.mse_loss(proj[0], proj[1])


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference of neighbouring pixels: large for high-frequency noise, small for edges."""
    image = image.float()
    return ((image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
            + (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean())


STABILITY_NOISE = 0.02  # std of the noise on the shifted content (Wang et al. 2020 use small Gaussian noise)
GRID = ENCODER_LAYERS[ADAIN_LAYER].stride  # shifts by a multiple of this the networks follow anyway


def shifted_view(image: Tensor, dy: int, dx: int) -> Tensor:
    """``image`` moved down by ``dy`` and right by ``dx`` pixels (0 <= d < GRID), the uncovered edge reflected:
    ``view[..., y, x] = image[..., y - dy, x - dx]`` wherever that exists."""
    padded = F.pad(image, (GRID, 0, GRID, 0), mode="reflect")
    h, w = image.shape[-2:]
    return padded[..., GRID - dy:GRID - dy + h, GRID - dx:GRID - dx + w]


def stability_distance(moved_output: Tensor, output: Tensor, dy: int, dx: int) -> Tensor:
    """MSE between the output of the shifted content and the output shifted alike, where both show the picture."""
    h, w = output.shape[-2:]
    return mse(moved_output[..., dy:, dx:], output[..., :h - dy, :w - dx])


@torch.no_grad()
def boosted_drawing(encoder: VGGEncoder, teacher: nn.Module, content_at: Mapping[str, Tensor],
                    style_stats: Mapping[str, tuple[Tensor, Tensor]], levels: tuple[str, ...], boost: float) -> Tensor:
    """The picture ``teacher`` draws with style_boost ``boost``, as ``pipeline.stylize`` does: a first transfer
    (in 0..1, as shown), its statistics at ``levels``, and a second transfer asked past them by ``boost`` x the
    shortfall."""
    first = teacher(*(adain(content_at[name].float(), *style_stats[name]) for name in levels)).clamp(0.0, 1.0)
    reached = dict(zip(levels, statistics(encoder.encode(first, levels, fast=True))))
    return teacher(*(adain(content_at[name].float(), *corrected_statistics(style_stats[name], reached[name], boost))
                     for name in levels)).clamp(0.0, 1.0)


def compute_losses(encoder: VGGEncoder, decoder: nn.Module, content: Tensor, style: Tensor,
                   weights: LossWeights = LossWeights(), levels: tuple[str, ...] = (ADAIN_LAYER,),
                   std_weights: list[Tensor] | None = None, teacher: nn.Module | None = None) -> Losses:
    """Forward pass of one training step; ``decoder`` may be wrapped in DistributedDataParallel.

    ``levels`` are the encoder layers the decoder takes (its ``levels``), each AdaIN'd with the style's
    statistics at that layer; the content loss is at ADAIN_LAYER, as in the paper, and with ``skip_content`` also at
    the other levels, against their AdaIN targets. With identity or
    stability terms the stylization, the reconstruction and the shifted content go through the decoder as one
    batch (one pass, which DDP needs and which is faster than several). With ``weights.teacher`` the output's
    features at every style layer also match ``teacher``'s boosted drawing (``boosted_drawing``).
    """
    with torch.no_grad():
        style_feats = encoder.encode(style, STYLE_LAYERS, fast=True)
        content_feats = encoder.encode(content, STYLE_LAYERS, fast=True)
        style_at = dict(zip(STYLE_LAYERS, style_feats))
        content_at = dict(zip(STYLE_LAYERS, content_feats))
        style_stats = dict(zip(STYLE_LAYERS, statistics(style_feats)))
        targets = [adain(content_at[name].float(), *style_stats[name]) for name in levels]
        shifted = {}
        if weights.stability:
            dy, dx = (int(v) for v in torch.randint(1, GRID, (2,)))
            view = shifted_view(content, dy, dx)
            view = (view + STABILITY_NOISE * torch.randn_like(view)).clamp(0.0, 1.0)
            shifted = {name: adain(f.float(), *style_stats[name])
                       for name, f in zip(levels, encoder.encode(view, levels, fast=True))}
        drawn_feats = (encoder.encode(boosted_drawing(encoder, teacher, content_at, style_stats, levels,
                                                      weights.teacher_boost), STYLE_LAYERS, fast=True)
                       if weights.teacher else None)
    target = targets[0]
    zero = target.new_zeros(())
    batch = content.shape[0]
    originals, original_feats = [], []
    if weights.identity:
        originals, original_feats = [content], [content_at]
        if weights.identity_style:
            originals.append(style)
            original_feats.append(style_at)
    decoded = decoder(*(torch.cat([t] + [f[name].to(t.dtype) for f in original_feats]
                                  + ([shifted[name].to(t.dtype)] if shifted else []))
                        for name, t in zip(levels, targets)))
    reencoded = batch * (1 + len(originals))  # the shifted content's output is only compared in pixels
    decoded_feats = encoder.encode(decoded[:reencoded], STYLE_LAYERS)
    output, out_feats = decoded[:batch], [f[:batch] for f in decoded_feats]
    out_at = dict(zip(STYLE_LAYERS, out_feats))
    loss_c = mse(out_at[levels[0]], target)
    loss_sc = sum((weights.skip_content[name] * mse(out_at[name], t) for name, t in zip(levels[1:], targets[1:])
                   if name in weights.skip_content), zero)
    per_image = style_loss_per_image(out_feats, [style_stats[name] for name in STYLE_LAYERS], std_weights)
    loss_s = image_balanced(per_image) if weights.style_image_balance else per_image.mean()
    loss_tv = total_variation(output) if weights.tv else zero
    loss_colour = colour_distance(output, style) if weights.colour else zero
    loss_stability = stability_distance(decoded[reencoded:], output, dy, dx) if shifted else zero
    loss_teacher = feature_distance(out_feats, drawn_feats) if drawn_feats is not None else zero
    loss_ip, loss_if = zero, zero
    for i, (image, feats) in enumerate(zip(originals, original_feats), start=1):
        part = slice(i * batch, (i + 1) * batch)
        loss_ip = loss_ip + mse(decoded[part], image)
        loss_if = loss_if + feature_distance([f[part] for f in decoded_feats], [feats[n] for n in STYLE_LAYERS])
    total = (weights.content * loss_c + weights.style * loss_s + weights.tv * loss_tv
             + weights.identity_pixel * loss_ip + weights.identity_feature * loss_if + weights.colour * loss_colour
             + weights.stability * loss_stability + loss_sc + weights.teacher * loss_teacher)
    return Losses(loss_c, loss_s, loss_tv, loss_ip, loss_if, loss_colour, loss_stability, loss_sc, loss_teacher,
                  total, output)
