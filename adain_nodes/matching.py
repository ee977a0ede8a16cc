"""AdaIN without a network: give images or diffusion latents the channel statistics of a reference.

The same statistics and AdaIN as the style transfer (``core/stats.py``), applied to the raw
channels (RGB, or the 4/16/... channels of a latent) instead of VGG features: colour consistency
across img2img passes, a reference look in latent space.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .core.image import batch_index
from .core.stats import adain_target, masked_mean_std, mean_std
from .errors import AdaINInputError
from .pipeline import check_unit


def check_channels_tensor(x: object, name: str) -> Tensor:
    """``x`` as a finite ``[B, C, H, W]`` or ``[B, C, T, H, W]`` tensor with at least one element, or a clear error."""
    if not isinstance(x, torch.Tensor):
        raise AdaINInputError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5) or 0 in x.shape:
        raise AdaINInputError(f"{name}: expected shape [batch, channels, height, width] (or with frames "
                              f"[batch, channels, frames, height, width]), got {list(x.shape)}")
    if not x.is_floating_point():
        raise AdaINInputError(f"{name}: holds integers ({str(x.dtype).removeprefix('torch.')}), not the floating-point "
                              "values of an image or latent; fix the node that produced it")
    if not torch.isfinite(x).all():
        raise AdaINInputError(f"{name}: contains NaN or infinite values; fix the node that produced it")
    return x


def match_statistics(x: Tensor, reference: Tensor, strength: float, weight: Tensor | None = None,
                     names: tuple[str, str] = ("image", "reference")) -> Tensor:
    """``x`` with each channel's mean and std moved towards the reference's by ``strength`` (0..1).

    ``x`` is ``[B, C, ...spatial]``, ``reference`` ``[1 or B, C, ...]`` (any spatial size). With a
    soft ``weight`` ``[B, 1, H, W]`` (the same for every frame) the statistics of ``x`` are taken inside it and the
    result is blended by it, as the paper's spatial control. Computed in float32, returned in ``x``'s dtype;
    strength 0 returns ``x`` itself.
    """
    name, ref_name = names
    strength = check_unit(strength, "strength")
    check_channels_tensor(x, name)
    check_channels_tensor(reference, ref_name)
    if x.shape[1] != reference.shape[1]:
        raise AdaINInputError(f"{ref_name} has {reference.shape[1]} channels but {name} has {x.shape[1]}; use a "
                              f"{ref_name} of the same kind (e.g. latents of the same model family)")
    index = batch_index(x.shape[0], reference.shape[0], f"the {name}", f"the {ref_name}")
    if strength == 0.0:
        return x
    # AdaIN broadcasts over two spatial axes: the frames of a video latent are stacked on the height axis.
    work = x.float().flatten(2, 3) if x.dim() == 5 else x.float()
    reference = reference.to(work.device, torch.float32)
    ref_mean, ref_std = mean_std(reference)
    region = None
    if weight is not None:
        region = weight.to(work.device, torch.float32)
        if x.dim() == 5:
            region = region.unsqueeze(2).expand(-1, -1, x.shape[2], -1, -1).flatten(2, 3)
    own = mean_std(work) if region is None else masked_mean_std(work, region)
    for what, values, stats in ((name, x, own), (ref_name, reference, (ref_mean, ref_std))):
        if not all(torch.isfinite(t).all() for t in stats):  # else a flat picture of the other's mean, silently
            raise AdaINInputError(f"the {what}'s values are too large for float32 statistics (largest |value| "
                                  f"{float(values.abs().max()):.3g}); scale them down")
    result = adain_target(work, ref_mean[index], ref_std[index], strength, own=own)
    if region is not None:
        result = torch.lerp(work, result, region)
    result = result.reshape(x.shape).to(x.dtype)
    if not torch.isfinite(result).all():
        raise AdaINInputError(f"the result overflows {str(x.dtype).removeprefix('torch.')}: the {ref_name}'s or the "
                              f"{name}'s values are too large (largest |value| {float(reference.abs().max()):.3g} "
                              f"and {float(x.abs().max()):.3g}); scale them down")
    return result
