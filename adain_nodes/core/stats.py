"""Channel statistics and Adaptive Instance Normalization (Huang & Belongie 2017, eq. 8).

The epsilon convention follows the reference PyTorch port: unbiased variance plus ``eps``
before the square root, so statistics and results match models trained with it.
"""
from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-5
# No encoder's statistics (relu4_1 ones stay below about 50) or VAE's latents come near this magnitude: a
# preset or latent file beyond it is corrupt, and AdaIN of it would be a flat picture.
MAX_MAGNITUDE = 1e4


# The most a std shortfall (style / output, or its inverse) counts in ``corrected_statistics``. A channel the first
# output drew nearly flat (or far too strong) is not the decoder's to fix by asking many times the style's contrast:
# unlimited, style_boost made 34 of 759 pairs of ../shared/images more than 1.2x farther from the style (one 12.5x);
# limited to 2, 15 (the worst 1.41x, near-uniform textures), and the geometric mean of its gain went 0.912 -> 0.888.
BOOST_STD_RATIO_LIMIT = 2.0

# Elements of the squared-deviation temporary ``mean_std`` holds at once (16 MB in float32).
DEVIATION_CHUNK = 1 << 22


def _position_slices(flat: Tensor) -> list[slice]:
    """The slices of ``[B, C, N]``'s positions ``mean_std`` works through, DEVIATION_CHUNK elements each."""
    positions, step = flat.shape[2], max(1, DEVIATION_CHUNK // max(flat.shape[0] * flat.shape[1], 1))
    return [slice(i, i + step) for i in range(0, positions, step)]


class _MeanStd(torch.autograd.Function):
    """``mean_std``'s two chunked passes, with a backward written out in the same way: the gradient of
    ``[B, C, H, W]`` features comes back in their own dtype and memory format, a slice at a time, instead of autograd's
    float copy of the whole map, a zero-filled map per slice and a cast back (a training step's relu1_1 maps)."""

    @staticmethod
    def forward(ctx, features: Tensor, eps: float, exact: torch.dtype) -> tuple[Tensor, Tensor]:
        flat = features.flatten(2)
        mean = flat.mean(2, keepdim=True, dtype=exact)
        squares = sum((flat[..., part].to(exact) - mean).pow(2).sum(2) for part in _position_slices(flat))
        std = (squares / max(flat.shape[2] - 1, 1) + eps).sqrt()
        ctx.save_for_backward(features, mean, std)
        return mean[..., 0], std

    @staticmethod
    def backward(ctx, grad_mean: Tensor | None, grad_std: Tensor | None) -> tuple[Tensor, None, None]:
        # d mean / dx = 1 / n; d std / dx = (x - mean) / ((n - 1) std), the mean's own dependence summing to zero
        features, mean, std = ctx.saved_tensors
        grad = torch.empty_like(features)
        flat, flat_grad = features.flatten(2), grad.flatten(2)
        positions = flat.shape[2]
        scale = (grad_std.to(std.dtype) / (max(positions - 1, 1) * std) if grad_std is not None
                 else torch.zeros_like(std))[..., None]
        shift = (grad_mean.to(std.dtype) / positions if grad_mean is not None else torch.zeros_like(std))[..., None]
        for part in _position_slices(flat):
            flat_grad[..., part] = (flat[..., part].to(std.dtype) - mean).mul_(scale).add_(shift)
        return grad, None, None


def mean_std(features: Tensor, eps: float = EPS, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and std of ``[B, C, H, W]`` features, shaped ``[B, C]``, in ``dtype`` (default:
    the features'; training asks float32 of bf16 maps, whose statistics bf16 would round too coarsely).

    Two passes in float32 (or wider), the mean and then the squared deviations from it, a slice of positions at a
    time: as exact as ``torch.var_mean`` and 4x (contiguous) to 12x (channels_last, as the pipeline keeps features)
    faster on CPUs, whose var_mean reduces channels_last maps element by element; the temporary stays small. The
    gradient is computed the same way (``_MeanStd``), in the features' dtype and memory format.

    A single position (a 1x1 colour swatch) has its value as mean and no spread: the unbiased variance is
    undefined there (NaN), so it takes the population one, zero."""
    exact = torch.promote_types(features.dtype, torch.float32)  # float64 stays float64
    mean, std = _MeanStd.apply(features, eps, exact)
    dtype = dtype or features.dtype
    return mean.to(dtype), std.to(dtype)


def masked_mean_std(features: Tensor, weight: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Mean and std within a soft region ``weight`` (``[B, 1, H, W]`` in 0..1), shaped ``[B, C]``.

    Weights act as frequency weights, so a binary mask gives exactly the unbiased statistics of
    the selected positions (the paper's spatial control). An empty region gives finite values;
    the region's blend weight is zero there anyway.
    """
    w = weight.to(features.dtype).flatten(2)
    x = features.flatten(2)
    total = w.sum(dim=2)
    mean = (x * w).sum(dim=2) / total.clamp_min(1e-8)
    sq = ((x - mean.unsqueeze(2)) ** 2 * w).sum(dim=2)
    var = sq / (total - 1.0).clamp_min(1.0)
    return mean, (var + eps).sqrt()


@dataclass(frozen=True)
class Moments:
    """(Weighted) count, mean and sum of squared deviations per sample and channel, in float64, merged part by
    part (Chan et al.'s parallel update): the statistics of a whole image from its tiles, or of a clip's frames
    (``MomentsWindow``), none of them kept. ``mean_std`` then equals ``mean_std``/``masked_mean_std`` of the whole
    (same epsilon and correction)."""

    count: Tensor  # [B, 1]
    mean: Tensor  # [B, C]
    m2: Tensor  # [B, C]

    @classmethod
    def of(cls, features: Tensor, weight: Tensor | None = None) -> "Moments":
        """Moments of ``[B, C, H, W]`` features (within ``weight`` ``[B, 1, H, W]``), in two passes over the
        positions as rows of channels: a channels_last map (or a tile cut from one) is read in place, not
        transposed, and in any precision (about 5x faster than ``var_mean`` of its NCHW float copy)."""
        rows = features.permute(0, 2, 3, 1).to(torch.float32, copy=True).flatten(1, 2)  # [B, H*W, C]
        if weight is None:
            count = torch.full((rows.shape[0], 1), float(rows.shape[1]), device=rows.device)
            mean = rows.mean(dim=1, keepdim=True)
            m2 = rows.sub_(mean).square_().sum(dim=1)
        else:
            w = weight.permute(0, 2, 3, 1).float().flatten(1, 2)  # [B, H*W, 1]
            count = w.sum(dim=1)
            mean = (rows * w).sum(dim=1, keepdim=True) / count.clamp_min(1e-8)[:, None]
            m2 = (rows.sub_(mean).square_() * w).sum(dim=1)
        return cls(count.double(), mean[:, 0].double(), m2.double())

    def merge(self, other: "Moments") -> "Moments":
        count = self.count + other.count
        share = other.count / count.clamp_min(1e-300)
        delta = other.mean - self.mean
        return Moments(count, self.mean + delta * share, self.m2 + other.m2 + delta ** 2 * self.count * share)

    def __getitem__(self, rows: slice) -> "Moments":
        return Moments(self.count[rows], self.mean[rows], self.m2[rows])

    def mean_std(self, eps: float = EPS) -> tuple[Tensor, Tensor]:
        var = self.m2 / (self.count - 1.0).clamp_min(1.0)
        return self.mean.float(), (var + eps).sqrt().float()


class MomentsWindow:
    """Statistics pooled over the last ``size`` frames of a clip, exactly: what video AdaIN normalises each frame
    by, so the picture does not pump as things enter and leave. Carried from one batch of frames to the next."""

    def __init__(self, size: int) -> None:
        self.frames: collections.deque[Moments] = collections.deque(maxlen=size)

    def pooled(self, moments: Moments, starts: Sequence[bool] = ()) -> tuple[Tensor, Tensor]:
        """Mean and std ``[K, C]`` of each of K consecutive frames (``moments``' rows) pooled with the frames before
        it in the window; a true ``starts[k]`` (a new shot) empties the window before frame k."""
        means, stds = [], []
        for k in range(moments.mean.shape[0]):
            if k < len(starts) and starts[k]:
                self.frames.clear()
            self.frames.append(moments[k:k + 1])
            mean, std = functools.reduce(Moments.merge, self.frames).mean_std()
            means.append(mean)
            stds.append(std)
        return torch.cat(means), torch.cat(stds)


def adain(content: Tensor, style_mean: Tensor, style_std: Tensor,
          content_mean: Tensor | None = None, content_std: Tensor | None = None) -> Tensor:
    """Give ``content`` ``[B, C, H, W]`` the channel statistics ``style_mean``/``style_std`` ``[B, C]``.

    Content statistics default to those of ``content`` itself; pass them to normalise by
    statistics of a region or of a whole image that ``content`` is only a tile of.
    """
    own = None if content_mean is None or content_std is None else (content_mean, content_std)
    return adain_target(content, style_mean, style_std, own=own)


def adain_target(x: Tensor, mean: Tensor, std: Tensor, strength: float = 1.0, weight: Tensor | None = None,
                 own: tuple[Tensor, Tensor] | None = None, in_place: bool = False) -> Tensor:
    """AdaIN of raw channels ``x`` ``[B, C, H, W]`` to ``mean``/``std`` ``[B, C]``, with x's own statistics taken
    within the soft region ``weight`` (all of x without; ``own`` when x is a tile of what they were taken
    of), traded off against x by ``strength``: what a (masked) blend moves x towards. Style transfer does it to
    VGG features, colour matching to pixels or latents.

    x + strength * (AdaIN(x) - x) is one affine map a channel, ``(x - own_mean) * scale + shift``, done in one
    chain of in-place operations (at strength 1 exactly the paper's AdaIN). ``in_place`` overwrites ``x`` with the
    result, for callers that never read ``x`` again: no copy the size of x (at relu1_1, 256 bytes an image pixel)
    and no page faults to fill one.
    """
    if own is not None:
        own_mean, own_std = own
    else:
        own_mean, own_std = mean_std(x) if weight is None else masked_mean_std(x, weight)
    gain = std / own_std
    scale = (strength * gain + (1.0 - strength))[..., None, None]
    shift = (strength * mean + (1.0 - strength) * own_mean)[..., None, None]
    centred = x.sub_(own_mean[..., None, None]) if in_place else x - own_mean[..., None, None]
    return centred.mul_(scale).add_(shift)


def corrected_statistics(aimed: tuple[Tensor, Tensor], achieved: tuple[Tensor, Tensor],
                         gain: float) -> tuple[Tensor, Tensor]:
    """What to ask of a decoder whose output reached ``achieved`` when asked for ``aimed`` (mean, std ``[B, C]``):
    the aim moved by ``gain`` x the shortfall, ``mean + gain (aimed - achieved)`` and ``std (aimed / achieved) **
    gain`` (a std scales, so its shortfall is a ratio, limited to BOOST_STD_RATIO_LIMIT either way). For a given
    content image a decoder misses the style's statistics by about the same channel pattern whatever it is asked,
    so asking past them lands its output nearer; gain 1 overshoots."""
    (mean, std), (got_mean, got_std) = aimed, achieved
    ratio = (std / got_std.clamp_min(EPS)).clamp(1 / BOOST_STD_RATIO_LIMIT, BOOST_STD_RATIO_LIMIT)
    return mean + gain * (mean - got_mean), std * ratio.pow(gain)


def style_loss_per_image(features: list[Tensor], target_stats: list[tuple[Tensor, Tensor]],
                         std_weights: list[Tensor] | None = None) -> Tensor:
    """Each image's style loss, ``[B]``: the sum over layers of its channels' mean squared error of means and of
    (``std_weights``-weighted) stds against ``target_stats`` (per layer, float32 (mean, std) ``[B or 1, C]``). With
    no weights it is the paper's (the reference port's ``calc_style_loss``), what training, refining and the
    evaluation mean by the style loss."""
    total = features[0].new_zeros(features[0].shape[0], dtype=torch.float32)
    for i, (feat, (tm, ts)) in enumerate(zip(features, target_stats)):
        fm, fs = mean_std(feat, dtype=torch.float32)
        std_error = (fs - ts).pow(2)
        if std_weights is not None:
            std_error = std_error * std_weights[i].to(fs.device)
        total = total + (fm - tm).pow(2).mean(1) + std_error.mean(1)
    return total


def mix_statistics(means: list[Tensor], stds: list[Tensor], weights: list[float]) -> tuple[Tensor, Tensor]:
    """Interpolate K styles by mixing their statistics with ``weights`` normalised to sum 1.

    AdaIN is affine in (mean, std), so this equals the paper's weighted sum of AdaIN outputs.
    """
    if not (len(means) == len(stds) == len(weights)) or not means:
        raise ValueError("mix_statistics needs as many weights as styles, and at least one style")
    total = float(sum(weights))
    if any(w < 0 for w in weights) or total <= 0:
        raise ValueError(f"style weights must be >= 0 and not all zero, got {list(weights)}")
    mean = sum(m * (w / total) for m, w in zip(means, weights))
    std = sum(s * (w / total) for s, w in zip(stds, weights))
    return mean, std
