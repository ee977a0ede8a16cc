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
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .core.color import luminance_as_rgb, match_color, transfer_luminance
from .core.detail import add_content_detail
from .core.image import batch_index, mask_to_weight, pad_for_encoder
from .core.stats import adain, masked_mean_std, mean_std, mix_statistics
from .errors import AdaINInputError
from .host.runtime import Runtime
from .core.layers import ADAIN_LAYER, ENCODER_LAYERS, SKIP_LAYERS
from .models.loaded import LoadedModel
from .models.networks import AdaINDecoder, SkipDecoder, VGGEncoder
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
    spatial control instead of stylizing an already stylized region. ``skips`` and
    ``content_skips`` are the same at SKIP_LAYERS, present only when encoded for a skip decoder.
    """

    features: Tensor
    content: Tensor
    image_size: tuple[int, int]
    encoder_id: str
    encoder_name: str
    layer: str = ADAIN_LAYER
    skips: dict[str, Tensor] = field(default_factory=dict)
    content_skips: dict[str, Tensor] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.features.shape[0])

    def replace(self, features: Tensor, skips: dict[str, Tensor] | None = None) -> "AdaINFeatures":
        return dataclasses.replace(self, features=features, skips=self.skips if skips is None else skips)

    def expand(self, count: int) -> "AdaINFeatures":
        """One image's features as a batch of ``count`` views (no copies), e.g. to blend ``count`` styles."""
        grow = lambda x: x.expand(count, -1, -1, -1)  # noqa: E731
        return dataclasses.replace(self, features=grow(self.features), content=grow(self.content),
                                   skips={n: grow(f) for n, f in self.skips.items()},
                                   content_skips={n: grow(f) for n, f in self.content_skips.items()})

    def without_content(self) -> "AdaINFeatures":
        """The same features with the unstylized copies let go (nothing downstream of the last blend needs
        them; large images need the memory)."""
        return dataclasses.replace(self, content=self.features, content_skips=self.skips)


@dataclass(frozen=True)
class AdaINStyle:
    """Per-channel mean and std ``[K, C]`` of K styles, tied to the encoder and layer that made them.

    ``skips`` holds the same at SKIP_LAYERS, for skip decoders (empty in presets saved before them)."""

    mean: Tensor
    std: Tensor
    encoder_id: str
    encoder_name: str
    layer: str = ADAIN_LAYER
    skips: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

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
Decoder = LoadedModel[AdaINDecoder | SkipDecoder]


def run_chunked(runtime: Runtime, count: int, size: tuple[int, int], tiling: Tiling,
                step: Callable[[int, int, Tiling], Tensor], model: LoadedModel | None = None) -> Tensor:
    """Concatenate ``step(start, stop, tiling)`` (a tensor, or a list of them each concatenated) over a batch of ``count`` images of ``size`` pixels, in
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
    if isinstance(outputs[0], Tensor):
        return torch.cat(outputs)
    return [torch.cat(parts) for parts in zip(*outputs)]


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
                   reduce: Callable[[list[Tensor], int, int], list[Tensor]],
                   layers: tuple[str, ...] = (ADAIN_LAYER,)) -> list[Tensor]:
    """Encode padded images to ``layers`` in memory-sized chunks (whole images) or tile by tile (large images)."""
    device, out = runtime.compute_device(), runtime.output_device()
    size = tuple(pad_for_encoder(images[:1, :1]).shape[-2:])

    def run(x: Tensor) -> list[Tensor]:
        return [f.float() for f in encoder.network.encode(_to_device(x, device), layers, fast=True)]

    def step(a: int, b: int, tiling: Tiling) -> list[Tensor]:
        with _compute(encoder, device):
            x = pad_for_encoder(images[a:b])
            if tiling.applies(*size):
                tiles = [encode_tiled(run, x[i:i + 1], tiling, out) for i in range(b - a)]
                features = [torch.cat(level) for level in zip(*tiles)]
            else:
                features = run(x)
            return reduce(features, a, b)

    return run_chunked(runtime, images.shape[0], size, tiling, step, encoder)


def _decoder_levels(levels: tuple[str, ...]) -> tuple[str, ...]:
    if not levels or levels[0] != ADAIN_LAYER or not set(levels[1:]) <= set(SKIP_LAYERS):
        raise ValueError(f"levels must be {ADAIN_LAYER!r} followed by any of {SKIP_LAYERS}, got {levels}")
    return levels


def encode(encoder: Encoder, images: Tensor, runtime: Runtime, tiling: Tiling = DEFAULT_TILING,
           levels: tuple[str, ...] = (ADAIN_LAYER,)) -> AdaINFeatures:
    """Encode RGB ``[B, 3, H, W]`` images to ADAIN_LAYER features (padded to a multiple of SIZE_MULTIPLE), and to
    the SKIP_LAYERS among ``levels`` (a decoder's ``levels``): only skip decoders need those, at 7x the memory."""
    out = runtime.output_device()
    levels = _decoder_levels(tuple(levels))
    found = _encode_images(encoder, images, runtime, tiling, lambda fs, a, b: [f.to(out) for f in fs], levels)
    skips = dict(zip(levels[1:], found[1:]))
    return AdaINFeatures(found[0], found[0], tuple(images.shape[-2:]), encoder.identity, encoder.name,
                         skips=skips, content_skips=skips)


def _grid(images: Tensor, layer: str) -> tuple[int, int]:
    """The feature grid of ``layer`` for (padded) ``images``."""
    stride = ENCODER_LAYERS[layer].stride
    return tuple(s // stride for s in pad_for_encoder(images[:1, :1]).shape[-2:])


def style_statistics(encoder: Encoder, images: Tensor, runtime: Runtime, mask: Tensor | None = None,
                     average: bool = False, tiling: Tiling = DEFAULT_TILING) -> AdaINStyle:
    """Statistics of each style image (or their average), optionally within a mask of the style image.

    They are taken at SKIP_LAYERS too (the encoder passes them anyway), so any decoder can use them."""
    layers = (ADAIN_LAYER,) + SKIP_LAYERS
    weights = None
    if mask is not None:
        weights = {name: mask_to_weight(mask, images.shape[0], tuple(images.shape[-2:]), _grid(images, name),
                                        "style mask") for name in layers}

    def reduce(features: list[Tensor], a: int, b: int) -> list[Tensor]:
        stats = []
        for name, level in zip(layers, features):
            if weights is None:
                m, s = mean_std(level)
            else:
                m, s = masked_mean_std(level, weights[name][a:b].to(level.device))
            stats.append(torch.stack([m, s], dim=1).float().cpu())
        return stats

    found = {}
    for name, stats in zip(layers, _encode_images(encoder, images, runtime, tiling, reduce, layers)):
        mean, std = stats[:, 0], stats[:, 1]
        if average:
            mean, std = mean.mean(dim=0, keepdim=True), std.mean(dim=0, keepdim=True)
        found[name] = (mean, std)
    return AdaINStyle(*found[ADAIN_LAYER], encoder.identity, encoder.name,
                      skips={name: found[name] for name in SKIP_LAYERS})


def stack_styles(styles: Sequence[AdaINStyle]) -> AdaINStyle:
    """One style batch of the given styles (each of one or more), in order; all from one encoder."""
    first = styles[0]
    for i, other in enumerate(styles[1:], start=2):
        _check_same_encoder("style 1", first, f"style {i}", other)
    shared = [name for name in SKIP_LAYERS if all(name in s.skips for s in styles)]
    return AdaINStyle(torch.cat([s.mean for s in styles]), torch.cat([s.std for s in styles]), first.encoder_id,
                      first.encoder_name, first.layer,
                      {name: (torch.cat([s.skips[name][0] for s in styles]), torch.cat([s.skips[name][1] for s in styles]))
                       for name in shared})


def _blend_level(content: Tensor, current: Tensor, mean: Tensor, std: Tensor, index: list[int], alpha: float,
                 mask: Tensor | None, image_size: tuple[int, int]) -> Tensor:
    """AdaIN of one level's ``content`` to the style statistics, traded off by ``alpha``, over ``current``
    within the mask (resized to this level's grid)."""
    s_mean = mean[index].to(content.device, content.dtype)
    s_std = std[index].to(content.device, content.dtype)
    if mask is None:
        c_mean, c_std = mean_std(content)
        weight = None
    else:
        weight = mask_to_weight(mask, content.shape[0], image_size, tuple(content.shape[-2:])).to(content)
        c_mean, c_std = masked_mean_std(content, weight)
    target = adain(content, s_mean, s_std, c_mean, c_std)
    if alpha < 1.0:
        target = torch.lerp(content, target, alpha)
    return target if weight is None else torch.lerp(current, target, weight)


def blend(features: AdaINFeatures, style: AdaINStyle, alpha: float = 1.0, mask: Tensor | None = None) -> AdaINFeatures:
    """AdaIN with the content-style trade-off ``alpha``; with a mask, only inside it (soft edges blend).
    Features encoded for a skip decoder are blended alike at each of their levels."""
    _check_same_encoder("the content features", features, "the style", style)
    alpha = check_unit(alpha, "alpha")
    missing = [name for name in features.skips if name not in style.skips]
    if missing:
        raise AdaINInputError(f"the features carry {missing} for a skip decoder, but the style has no statistics "
                              "there (a preset saved before skip decoders?): compute the style again from its "
                              "image with AdaIN Style Statistics, and save it again")
    index = batch_index(features.count, style.count, "the content", "the style")
    with torch.inference_mode():
        result = _blend_level(features.content, features.features, style.mean, style.std, index, alpha, mask,
                              features.image_size)
        skips = {name: _blend_level(features.content_skips[name], level, *style.skips[name], index, alpha, mask,
                                    features.image_size) for name, level in features.skips.items()}
    return features.replace(result, skips)


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
    skips = {name: mix_statistics([s.skips[name][0][ix] for s, ix in zip(styles, indices)],
                                  [s.skips[name][1][ix] for s, ix in zip(styles, indices)], list(weights))
             for name in SKIP_LAYERS if all(name in s.skips for s in styles)}
    first = styles[0]
    return AdaINStyle(mean, std, first.encoder_id, first.encoder_name, first.layer, skips)


def decode(decoder: Decoder, features: AdaINFeatures, runtime: Runtime,
           tiling: Tiling = DEFAULT_TILING) -> Tensor:
    """Decode features to RGB ``[B, 3, H, W]`` in 0..1 at the size of the image that was encoded."""
    network = decoder.network
    channels = network.in_channels
    if features.features.shape[1] != channels:
        raise AdaINInputError(f"the decoder expects {channels}-channel features, got {features.features.shape[1]}")
    needed = network.levels[1:]
    missing = [name for name in needed if name not in features.skips]
    if missing:
        raise AdaINInputError(f"{decoder.name} is a skip decoder: it also takes the features at {list(needed)}, "
                              "which these were encoded without. Connect the decoder to AdaIN Encode's "
                              "'decoder' input, so it encodes them too")
    skips = [features.skips[name] for name in needed]
    h, w = features.image_size
    device, out = runtime.compute_device(), runtime.output_device()
    fh, fw = features.features.shape[-2:]
    size = (fh * GRID, fw * GRID)

    def run(x: Tensor, *levels: Tensor) -> Tensor:
        return network.infer(_to_device(x, device), *(_to_device(t, device) for t in levels)).float()

    def step(a: int, b: int, tiling: Tiling) -> Tensor:
        with _compute(decoder, device):
            x, levels = features.features[a:b], [t[a:b] for t in skips]
            if tiling.applies(*size):
                image = torch.cat([decode_tiled(run, x[i:i + 1], tiling, out, tuple(t[i:i + 1] for t in levels))
                                   for i in range(b - a)])
            else:
                image = run(x, *levels)
            return image[..., :h, :w].clamp(0.0, 1.0).to(out)

    result = run_chunked(runtime, features.count, size, tiling, step, decoder)
    if not torch.isfinite(result).all():
        raise AdaINInputError("the decoder produced NaN or infinite values; the decoder file is probably "
                              "corrupt, or its precision (fp16) overflows: load it with precision fp32")
    return result


def stylize(encoder: Encoder, decoder: Decoder, content: Tensor, style: Tensor, runtime: Runtime,
            alpha: float = 1.0, color: str = "off", tiling: Tiling = DEFAULT_TILING, detail: float = 0.0) -> Tensor:
    """One-call style transfer of RGB ``[B, 3, H, W]`` content with a style batch of 1 or B; ``detail`` adds
    that much of the content's own detail layer to the result (``with_content_detail``)."""
    if color not in COLOR_MODES:
        raise AdaINInputError(f"preserve_color must be one of {COLOR_MODES}, got {color!r}")
    alpha, detail = check_unit(alpha, "alpha"), check_unit(detail, "content_detail")
    index = batch_index(content.shape[0], style.shape[0], "the content", "the style")
    if color == "match style colors":
        style = match_color(style[index], content)
    elif color == "luminance only":
        style = luminance_as_rgb(style[index], like=content)
    stats = style_statistics(encoder, style, runtime, tiling=tiling)
    source = luminance_as_rgb(content) if color == "luminance only" else content
    styled = blend(encode(encoder, source, runtime, tiling, decoder.network.levels), stats, alpha)
    image = decode(decoder, styled.without_content(), runtime, tiling)
    image = transfer_luminance(content.to(image), image) if color == "luminance only" else image
    return with_content_detail(image, content, detail)


def with_content_detail(image: Tensor, content: Tensor, strength: float) -> Tensor:
    """A decoded ``image`` plus ``strength`` x the content's detail layer on its luminance
    (``core.detail``): the content's fine edges, which the decoder draws soft. 0 leaves it as it is."""
    strength = check_unit(strength, "content_detail")
    if strength == 0:
        return image
    if content.shape[-2:] != image.shape[-2:]:
        raise AdaINInputError(f"content_detail needs the content image at the decoded size: the content is "
                              f"{content.shape[-1]}x{content.shape[-2]}, the image "
                              f"{image.shape[-1]}x{image.shape[-2]}; connect the image that was encoded")
    batch_index(image.shape[0], content.shape[0], "the decoded images", "the content image")
    return add_content_detail(image, content, strength)
