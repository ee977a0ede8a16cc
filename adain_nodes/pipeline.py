"""The AdaIN operations the nodes expose, on host-independent types.

Everything here is plain torch plus a ``Runtime`` (device, memory, progress, interrupts), so the
same code runs inside ComfyUI, in the headless runner and in tests. Batches are processed in
chunks sized to free memory, halving the chunk (then the tile) on out-of-memory instead of failing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .core.color import luminance_as_rgb, match_color, transfer_luminance
from .core.image import batch_index, mask_to_weight, pad_for_encoder
from .core.stats import adain, masked_mean_std, mean_std, mix_statistics
from .errors import AdaINInputError
from .host.runtime import Runtime
from .core.layers import ADAIN_LAYER
from .models.loaded import LoadedModel
from .models.networks import AdaINDecoder, VGGEncoder
from .models.precision import resolve_precision
from .tiling import GRID, Tiling, decode_tiled, encode_tiled

log = logging.getLogger(__name__)

COLOR_MODES = ("off", "match style colors", "luminance only")
DEFAULT_TILING = Tiling()
# Activation memory per pixel at full resolution: the 64-channel layers dominate (input,
# output and padded copy of a float32 conv), with slack for the allocator.
BYTES_PER_PIXEL = 64 * 4 * 4


@dataclass(frozen=True)
class AdaINFeatures:
    """Encoded images on their way to the decoder.

    ``content`` keeps the encoder's output untouched: AdaIN statistics and the alpha trade-off
    always refer to it, so chained blends (one per masked region) compose like the paper's
    spatial control instead of stylizing an already stylized region.
    """

    features: Tensor
    content: Tensor
    image_size: tuple[int, int]
    encoder_id: str
    encoder_name: str
    layer: str = ADAIN_LAYER

    @property
    def count(self) -> int:
        return int(self.features.shape[0])

    def replace(self, features: Tensor) -> "AdaINFeatures":
        return AdaINFeatures(features, self.content, self.image_size, self.encoder_id, self.encoder_name, self.layer)


@dataclass(frozen=True)
class AdaINStyle:
    """Per-channel mean and std ``[K, C]`` of K styles, tied to the encoder and layer that made them."""

    mean: Tensor
    std: Tensor
    encoder_id: str
    encoder_name: str
    layer: str = ADAIN_LAYER

    @property
    def count(self) -> int:
        return int(self.mean.shape[0])


def _channels(x: "AdaINFeatures | AdaINStyle") -> int:
    return int(x.features.shape[1]) if isinstance(x, AdaINFeatures) else int(x.mean.shape[-1])


def _check_same_encoder(a_name: str, a, b_name: str, b) -> None:
    if (a.encoder_id, a.layer) != (b.encoder_id, b.layer):
        raise AdaINInputError(
            f"{b_name} was computed with encoder {b.encoder_name!r} ({b.encoder_id}, {b.layer}) but {a_name} with "
            f"{a.encoder_name!r} ({a.encoder_id}, {a.layer}); use the same encoder for both")
    # Only a preset written by other software can get here with matching identities (caught by fuzzing).
    if _channels(a) != _channels(b):
        raise AdaINInputError(f"{b_name} has {_channels(b)} channels but {a_name} has {_channels(a)}; it was not "
                              f"made by this encoder's {a.layer}: save the style again with AdaIN Save Style")


def check_unit(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise AdaINInputError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


Encoder = LoadedModel[VGGEncoder]
Decoder = LoadedModel[AdaINDecoder]


def run_chunked(runtime: Runtime, count: int, size: tuple[int, int], tiling: Tiling,
                step: Callable[[int, int, Tiling], Tensor], model: LoadedModel | None = None) -> Tensor:
    """Concatenate ``step(start, stop, tiling)`` over a batch of ``count`` images of ``size`` pixels, in
    chunks that fit memory. On out-of-memory the chunk is halved; once one image does not fit, the tiles
    are (as ComfyUI's upscale node does), down to ``MIN_BACKOFF_TILE``; then the error is raised."""

    def image_bytes(t: Tiling) -> int:
        return t.working_pixels(*size) * BYTES_PER_PIXEL

    chunk = max(1, min(count, runtime.free_bytes() // max(image_bytes(tiling), 1)))
    if model is not None:
        runtime.load(model, chunk * image_bytes(tiling))
    report = runtime.progress(count)
    outputs: list[Tensor] = []
    start = 0
    while start < count:
        runtime.check_interrupt()
        stop = min(start + chunk, count)
        try:
            outputs.append(step(start, stop, tiling))
        except Exception as error:
            if not runtime.is_out_of_memory(error):
                raise
            if chunk > 1:
                chunk = max(1, chunk // 2)
                log.warning("out of memory; retrying with %d image(s) at a time", chunk)
            else:
                smaller = tiling.halved(*size)
                if smaller is None:
                    raise
                tiling = smaller
                log.warning("out of memory on one image; retrying in tiles of %d px", tiling.size)
            runtime.release_cache()
            continue
        start = stop
        report(start)
    return torch.cat(outputs)


def _compute(model: LoadedModel, device: torch.device):
    """Inference context for ``model`` on ``device``: autocast to its precision, channels_last weights.

    channels_last is what oneDNN (CPU) and cuDNN (GPU) convolve fastest without reordering every
    layer: about 3x on the 2-core AVX-512 CPU this pack is benchmarked on, at equal fp32 output.
    Autocast lowers only the convolutions: statistics, AdaIN and blending stay in float32.
    """
    dtype = resolve_precision(model.precision, device)
    model.network.to(memory_format=torch.channels_last)
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if dtype != torch.float32:
        stack.enter_context(torch.autocast(device.type, dtype=dtype))
    return stack


def _to_device(x: Tensor, device: torch.device) -> Tensor:
    return x.to(device, torch.float32, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _encode_images(encoder: Encoder, images: Tensor, runtime: Runtime, tiling: Tiling,
                   reduce: Callable[[Tensor, int, int], Tensor]) -> Tensor:
    """Encode padded images in memory-sized chunks (whole images) or tile by tile (large images)."""
    device, out = runtime.compute_device(), runtime.output_device()
    size = tuple(pad_for_encoder(images[:1, :1]).shape[-2:])

    def run(x: Tensor) -> Tensor:
        return encoder.network.encode(_to_device(x, device), fast=True)[0].float()

    def step(a: int, b: int, tiling: Tiling) -> Tensor:
        with _compute(encoder, device):
            x = pad_for_encoder(images[a:b])
            if tiling.applies(*size):
                features = torch.cat([encode_tiled(run, x[i:i + 1], tiling, out) for i in range(b - a)])
            else:
                features = run(x)
            return reduce(features, a, b)

    return run_chunked(runtime, images.shape[0], size, tiling, step, encoder)


def encode(encoder: Encoder, images: Tensor, runtime: Runtime, tiling: Tiling = DEFAULT_TILING) -> AdaINFeatures:
    """Encode RGB ``[B, 3, H, W]`` images to ADAIN_LAYER features (padded to a multiple of SIZE_MULTIPLE)."""
    out = runtime.output_device()
    features = _encode_images(encoder, images, runtime, tiling, lambda f, a, b: f.to(out))
    return AdaINFeatures(features, features, tuple(images.shape[-2:]), encoder.identity, encoder.name)


def style_statistics(encoder: Encoder, images: Tensor, runtime: Runtime, mask: Tensor | None = None,
                     average: bool = False, tiling: Tiling = DEFAULT_TILING) -> AdaINStyle:
    """Statistics of each style image (or their average), optionally within a mask of the style image."""
    weights = None
    if mask is not None:
        grid = tuple(s // 8 for s in pad_for_encoder(images[:1, :1]).shape[-2:])
        weights = mask_to_weight(mask, images.shape[0], tuple(images.shape[-2:]), grid, "style mask")

    def reduce(features: Tensor, a: int, b: int) -> Tensor:
        if weights is None:
            m, s = mean_std(features)
        else:
            m, s = masked_mean_std(features, weights[a:b].to(features.device))
        return torch.stack([m, s], dim=1).float().cpu()

    stats = _encode_images(encoder, images, runtime, tiling, reduce)
    mean, std = stats[:, 0], stats[:, 1]
    if average:
        mean, std = mean.mean(dim=0, keepdim=True), std.mean(dim=0, keepdim=True)
    return AdaINStyle(mean, std, encoder.identity, encoder.name)


def blend(features: AdaINFeatures, style: AdaINStyle, alpha: float = 1.0, mask: Tensor | None = None) -> AdaINFeatures:
    """AdaIN with the content-style trade-off ``alpha``; with a mask, only inside it (soft edges blend)."""
    _check_same_encoder("the content features", features, "the style", style)
    alpha = check_unit(alpha, "alpha")
    content = features.content
    index = batch_index(features.count, style.count, "the content", "the style")
    s_mean = style.mean[index].to(content.device, content.dtype)
    s_std = style.std[index].to(content.device, content.dtype)
    with torch.inference_mode():
        if mask is None:
            c_mean, c_std = mean_std(content)
            weight = None
        else:
            weight = mask_to_weight(mask, features.count, features.image_size, tuple(content.shape[-2:])).to(content)
            c_mean, c_std = masked_mean_std(content, weight)
        target = adain(content, s_mean, s_std, c_mean, c_std)
        if alpha < 1.0:
            target = torch.lerp(content, target, alpha)
        result = target if weight is None else torch.lerp(features.features, target, weight)
    return features.replace(result)


def mix_styles(styles: Sequence[AdaINStyle], weights: Sequence[float],
               numbers: Sequence[int] | None = None) -> AdaINStyle:
    """Interpolate styles; each may hold one style (applies to all) or the same number K.

    ``numbers`` are the input numbers the messages use (style_3 stays style_3 when style_2 is absent).
    """
    numbers = list(numbers) if numbers is not None else list(range(1, len(styles) + 1))
    if len(styles) < 2:
        raise AdaINInputError("mixing needs at least two styles")
    for i, w in zip(numbers, weights):
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise AdaINInputError(f"weight_{i} must be a finite number >= 0, got {w!r}")
    if sum(weights) <= 0 or not math.isfinite(sum(weights)):
        raise AdaINInputError("at least one style weight must be above 0, and their sum finite")
    for i, s in zip(numbers[1:], styles[1:]):
        _check_same_encoder(f"style_{numbers[0]}", styles[0], f"style_{i}", s)
    count = max(s.count for s in styles)
    indices = [batch_index(count, s.count, "the largest style batch", f"style_{i}") for i, s in zip(numbers, styles)]
    mean, std = mix_statistics([s.mean[ix] for s, ix in zip(styles, indices)],
                               [s.std[ix] for s, ix in zip(styles, indices)], list(weights))
    first = styles[0]
    return AdaINStyle(mean, std, first.encoder_id, first.encoder_name, first.layer)


def decode(decoder: Decoder, features: AdaINFeatures, runtime: Runtime,
           tiling: Tiling = DEFAULT_TILING) -> Tensor:
    """Decode features to RGB ``[B, 3, H, W]`` in 0..1 at the size of the image that was encoded."""
    channels = decoder.network[1].in_channels
    if features.features.shape[1] != channels:
        raise AdaINInputError(f"the decoder expects {channels}-channel features, got {features.features.shape[1]}")
    h, w = features.image_size
    device, out = runtime.compute_device(), runtime.output_device()
    fh, fw = features.features.shape[-2:]
    size = (fh * GRID, fw * GRID)

    def run(x: Tensor) -> Tensor:
        return decoder.network.infer(_to_device(x, device)).float()

    def step(a: int, b: int, tiling: Tiling) -> Tensor:
        with _compute(decoder, device):
            x = features.features[a:b]
            if tiling.applies(*size):
                image = torch.cat([decode_tiled(run, x[i:i + 1], tiling, out) for i in range(b - a)])
            else:
                image = run(x)
            return image[..., :h, :w].clamp(0.0, 1.0).to(out)

    result = run_chunked(runtime, features.count, size, tiling, step, decoder)
    if not torch.isfinite(result).all():
        raise AdaINInputError("the decoder produced NaN or infinite values; the decoder file is probably "
                              "corrupt, or its precision (fp16) overflows: load it with precision fp32")
    return result


def stylize(encoder: Encoder, decoder: Decoder, content: Tensor, style: Tensor, runtime: Runtime,
            alpha: float = 1.0, color: str = "off", tiling: Tiling = DEFAULT_TILING) -> Tensor:
    """One-call style transfer of RGB ``[B, 3, H, W]`` content with a style batch of 1 or B."""
    if color not in COLOR_MODES:
        raise AdaINInputError(f"preserve_color must be one of {COLOR_MODES}, got {color!r}")
    alpha = check_unit(alpha, "alpha")
    index = batch_index(content.shape[0], style.shape[0], "the content", "the style")
    if color == "match style colors":
        style = match_color(style[index], content)
    elif color == "luminance only":
        style = luminance_as_rgb(style[index], like=content)
    stats = style_statistics(encoder, style, runtime, tiling=tiling)
    source = luminance_as_rgb(content) if color == "luminance only" else content
    styled = blend(encode(encoder, source, runtime, tiling), stats, alpha)
    # nothing downstream needs the unstylized features: let them go before decoding (large images)
    styled = dataclasses.replace(styled, content=styled.features)
    image = decode(decoder, styled, runtime, tiling)
    return transfer_luminance(content.to(image), image) if color == "luminance only" else image
