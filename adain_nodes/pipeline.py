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
from .core.layers import ADAIN_LAYER, BYTES_PER_PIXEL, ENCODER_LAYERS, GRID, STYLE_LAYERS
from .core.stats import (Moments, MomentsWindow, adain_target, corrected_statistics, masked_mean_std, mean_std,
                         mix_statistics)
from .errors import AdaINInputError
from .host.runtime import Runtime, Steps
from .models.loaded import LoadedModel
from .models.networks import AdaINDecoder, SkipDecoder, VGGEncoder
from .models.precision import resolve_precision
from . import refine
from .tiling import Tiling, context_cells, cut, decode_tiled, encode_tiled, encode_tiles, tile_count

log = logging.getLogger(__name__)

COLOR_MODES = ("off", "match style colors", "luminance only")
DEFAULT_TILING = Tiling()
Levels = dict[str, Tensor]


def _combine(content: Tensor, weighted: Tensor, cover: Tensor) -> Tensor:
    """The sum of weighted targets plus the content where the weights leave room, normalised where they
    overlap beyond 1: what the blends so far make of one level, in any order."""
    if cover.numel() == 1 and float(cover) == 1.0:  # one blend without a mask: its target, no copies
        return weighted
    return (weighted + (1.0 - cover).clamp_min(0.0) * content) / cover.clamp_min(1.0)


@dataclass(frozen=True)
class AdaINFeatures:
    """Encoded images on their way to the decoder, one entry per encoder level (``layer`` first).

    ``content`` keeps the encoder's output untouched: AdaIN statistics and the alpha trade-off always refer
    to it. Blends add up instead of overwriting: ``weighted`` is each level's sum of mask-weighted targets,
    ``cover`` the sum of the masks (``[B or 1, 1, h, w]``, 1 without a mask); ``levels`` combines them with
    the content where no mask covers it, so chained blends (one per region) give the same result in any
    order, for soft and off-grid masks alike. A skip decoder takes the levels it declares; encode asks for them.
    """

    content: Levels
    image_size: tuple[int, int]
    encoder_id: str
    encoder_name: str
    layer: str = ADAIN_LAYER
    weighted: Levels = field(default_factory=dict)
    cover: Levels = field(default_factory=dict)

    @property
    def levels(self) -> Levels:
        """What goes to the decoder, by encoder layer."""
        if not self.weighted:
            return self.content
        return {name: _combine(c, self.weighted[name], self.cover[name]) for name, c in self.content.items()}

    @property
    def features(self) -> Tensor:
        """The AdaIN layer's features (what a relu4_1 decoder takes)."""
        return self.levels[self.layer]

    @property
    def count(self) -> int:
        return int(self.content[self.layer].shape[0])

    def expand(self, count: int) -> "AdaINFeatures":
        """One image's features as a batch of ``count`` views (no copies), e.g. to blend ``count`` styles."""
        grow = lambda levels: {n: x.expand(count, *x.shape[1:]) for n, x in levels.items()}  # noqa: E731
        return dataclasses.replace(self, content=grow(self.content), weighted=grow(self.weighted),
                                   cover=grow(self.cover))

    def without_content(self) -> "AdaINFeatures":
        """The combined levels as the content, the blends' sums let go (nothing downstream of the last blend
        needs them; large images need the memory)."""
        return dataclasses.replace(self, content=self.levels, weighted={}, cover={})


@dataclass(frozen=True)
class AdaINStyle:
    """Per-channel mean and std ``[K, C]`` of K styles at each encoder level, tied to the encoder that made them.

    ``levels`` maps a layer name to its ``(mean, std)``; ``layer`` (the AdaIN layer) is always there, the others
    are absent in presets saved before skip decoders."""

    levels: dict[str, tuple[Tensor, Tensor]]
    encoder_id: str
    encoder_name: str
    layer: str = ADAIN_LAYER

    @property
    def mean(self) -> Tensor:
        return self.levels[self.layer][0]

    @property
    def std(self) -> Tensor:
        return self.levels[self.layer][1]

    @property
    def count(self) -> int:
        return int(self.mean.shape[0])


def _channels(x: "AdaINFeatures | AdaINStyle") -> int:
    return int(x.content[x.layer].shape[1]) if isinstance(x, AdaINFeatures) else int(x.mean.shape[-1])


def _check_same_encoder(a_name: str, a, b_name: str, b) -> None:
    if (a.encoder_id, a.layer) != (b.encoder_id, b.layer):
        raise AdaINInputError(
            f"{b_name} was computed with encoder {b.encoder_name!r} ({b.encoder_id}, {b.layer}) but {a_name} with "
            f"{a.encoder_name!r} ({a.encoder_id}, {a.layer}); use the same encoder for both")
    # Only a preset written by other software can get here with matching identities (caught by fuzzing).
    if _channels(a) != _channels(b):
        raise AdaINInputError(f"{b_name} has {_channels(b)} channels but {a_name} has {_channels(a)}; it was not "
                              f"made by this encoder's {a.layer}: save the style again with AdaIN Save Style")


def _statistics_of(encoder: Encoder) -> AdaINStyle:
    """An empty style as ``encoder`` makes them (its identity, layer and channels), to check another style against
    it with ``_check_same_encoder`` where no statistics of its own are at hand."""
    empty = torch.empty(0, ENCODER_LAYERS[ADAIN_LAYER].channels)
    return AdaINStyle({ADAIN_LAYER: (empty, empty)}, encoder.identity, encoder.name)


def check_unit(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise AdaINInputError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


Encoder = LoadedModel[VGGEncoder]
Decoder = LoadedModel[AdaINDecoder | SkipDecoder]


def run_chunked(runtime: Runtime, count: int, size: tuple[int, int], tiling: Tiling,
                step: Callable[[int, int, Tiling, Steps], Tensor], models: Sequence[LoadedModel] = (),
                passes: int = 1) -> Tensor:
    """Concatenate ``step(start, stop, tiling, steps)`` (a tensor, or a list of them each concatenated) over a batch
    of ``count`` images of ``size`` pixels, in chunks that fit memory. ``step`` ticks ``steps`` once per tile of
    each of its ``passes`` over an image (once per image when not tiled). On out-of-memory the chunk is halved;
    once one image does not fit, the tiles are (as ComfyUI's upscale node does), down to ``MIN_BACKOFF_TILE``;
    then the error is raised."""

    def image_bytes(t: Tiling) -> int:
        return t.working_pixels(*size) * BYTES_PER_PIXEL

    chunk = max(1, min(count, runtime.free_bytes() // max(image_bytes(tiling), 1)))
    for model in models:
        runtime.load(model, chunk * image_bytes(tiling))
    steps = Steps(runtime, count, passes * tile_count(*size, tiling))
    outputs: list[Tensor] | None = None  # the whole batch's, filled chunk by chunk (no second copy to concatenate)
    single = True
    start = 0
    while start < count:
        runtime.check_interrupt()
        stop = min(start + chunk, count)
        try:
            part = step(start, stop, tiling, steps)
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
            steps.restart(passes * tile_count(*size, tiling), start)
            runtime.release_cache()
            continue
        single, parts = isinstance(part, Tensor), [part] if isinstance(part, Tensor) else part
        if outputs is None:
            outputs = parts if stop == count else [p.new_empty((count,) + p.shape[1:]) for p in parts]
        if outputs is not parts:
            for whole, p in zip(outputs, parts):
                whole[start:stop] = p
        del part, parts
        start = stop
    return outputs[0] if single else outputs


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
    # entered even for float32, so a model run inside another's context (stylize's tiles) keeps its own precision
    stack.enter_context(torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32))
    return stack


def _to_device(x: Tensor, device: torch.device) -> Tensor:
    return x.to(device, torch.float32, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _encoder_run(encoder: Encoder, layers: tuple[str, ...], device: torch.device) -> Callable[[Tensor], list[Tensor]]:
    return lambda x: [f.float() for f in encoder.network.encode(_to_device(x, device), layers, fast=True)]


def _encode_images(encoder: Encoder, images: Tensor, runtime: Runtime, tiling: Tiling,
                   reduce: Callable[[list[Tensor], int, int], list[Tensor]], layers: tuple[str, ...]) -> list[Tensor]:
    """Encode padded images to ``layers`` in memory-sized chunks (whole images) or tile by tile (large images)."""
    device, out = runtime.compute_device(), runtime.output_device()
    size = tuple(pad_for_encoder(images[:1, :1]).shape[-2:])
    run = _encoder_run(encoder, layers, device)

    def step(a: int, b: int, tiling: Tiling, steps: Steps) -> list[Tensor]:
        with _compute(encoder, device):
            x = pad_for_encoder(images[a:b])
            if tiling.applies(*size):
                tiles = [encode_tiled(run, x[i:i + 1], tiling, layers, out, steps.tick) for i in range(b - a)]
                features = [torch.cat(level) for level in zip(*tiles)]
                return reduce(features, a, b)
            features = reduce(run(x), a, b)
            steps.tick(b - a)
            return features

    return run_chunked(runtime, images.shape[0], size, tiling, step, [encoder])


def _image_moments(run: Callable[[Tensor], list[Tensor]], image: Tensor, layers: tuple[str, ...], tiling: Tiling,
                   steps: Steps, weights: dict[str, Tensor] | None = None,
                   keep: Callable[[tuple[int, int, int, int], list[Tensor]], None] | None = None) -> dict[str, Moments]:
    """Statistics at ``layers`` (the first outputs of ``run``) of one padded image ``[1, 3, H, W]``, within
    ``weights`` on each level's grid, accumulated tile by tile: no map is kept but what ``keep(region, parts)``
    keeps of each tile's core."""
    found: dict[str, Moments] = {}
    for region, parts in encode_tiles(run, image, tiling, layers):
        y0, y1, x0, x1 = region
        if keep is not None:
            keep(region, parts)
        for name, part in zip(layers, parts):
            weight = None if weights is None else cut(weights[name], image.shape[-2] // GRID, y0, y1, x0, x1)
            moments = Moments.of(part, None if weight is None else weight.to(part.device))
            found[name] = found[name].merge(moments) if name in found else moments
        steps.tick()
    return found


def _check_levels(levels: tuple[str, ...]) -> tuple[str, ...]:
    if not levels or levels[0] != ADAIN_LAYER or not set(levels) <= set(ENCODER_LAYERS) or len(set(levels)) < len(
            levels):
        raise ValueError(f"levels must be {ADAIN_LAYER!r} followed by any others of {tuple(ENCODER_LAYERS)}, got "
                         f"{levels}")
    return levels


def encode(encoder: Encoder, images: Tensor, runtime: Runtime, tiling: Tiling = DEFAULT_TILING,
           levels: tuple[str, ...] = (ADAIN_LAYER,)) -> AdaINFeatures:
    """Encode RGB ``[B, 3, H, W]`` images (padded to a multiple of GRID) at ``levels`` (a decoder's ``levels``,
    the AdaIN layer first): only skip decoders need more than it, at several times the memory."""
    out = runtime.output_device()
    levels = _check_levels(tuple(levels))
    found = _encode_images(encoder, images, runtime, tiling, lambda fs, a, b: [f.to(out) for f in fs], levels)
    return AdaINFeatures(dict(zip(levels, found)), tuple(images.shape[-2:]), encoder.identity, encoder.name)


def _grid(images: Tensor, layer: str) -> tuple[int, int]:
    """The feature grid of ``layer`` for (padded) ``images``."""
    stride = ENCODER_LAYERS[layer].stride
    return tuple(s // stride for s in pad_for_encoder(images[:1, :1]).shape[-2:])


def style_statistics(encoder: Encoder, images: Tensor, runtime: Runtime, mask: Tensor | None = None,
                     average: bool = False, tiling: Tiling = DEFAULT_TILING) -> AdaINStyle:
    """Statistics of each style image (or their average), optionally within a mask of the style image.

    They are taken at every level of the layer table (the encoder passes them anyway), so any decoder can use
    them; a tiled image's are accumulated tile by tile, so its feature maps are never held whole."""
    layers = tuple(ENCODER_LAYERS)
    device = runtime.compute_device()
    size = tuple(pad_for_encoder(images[:1, :1]).shape[-2:])
    weights = None
    if mask is not None:
        weights = {name: mask_to_weight(mask, images.shape[0], tuple(images.shape[-2:]), _grid(images, name),
                                        "style mask") for name in layers}
        empty = [i + 1 for i, total in enumerate(weights[ADAIN_LAYER].flatten(1).sum(1).tolist()) if total <= 0]
        if empty:  # its statistics would be a degenerate style (a flat grey picture), not the image's
            raise AdaINInputError(f"style mask: it selects nothing of style image(s) {empty}; paint the region to "
                                  "take the style from, or leave the mask unconnected")

    def pack(stats: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        return [torch.stack([m, s], dim=1).float().cpu() for m, s in stats]

    def step(a: int, b: int, tiling: Tiling, steps: Steps) -> list[Tensor]:
        with _compute(encoder, device):
            x = pad_for_encoder(images[a:b])
            if tiling.applies(*size):
                found = []
                for i in range(b - a):
                    own = None if weights is None else {n: w[a + i:a + i + 1] for n, w in weights.items()}
                    moments = _image_moments(_encoder_run(encoder, layers, device), x[i:i + 1], layers, tiling,
                                             steps, own)
                    found.append(pack([moments[name].mean_std() for name in layers]))
                return [torch.cat(level) for level in zip(*found)]
            features = _encoder_run(encoder, layers, device)(x)
            if weights is None:
                stats = [mean_std(level) for level in features]
            else:
                stats = [masked_mean_std(level, weights[name][a:b].to(level.device))
                         for name, level in zip(layers, features)]
            steps.tick(b - a)
            return pack(stats)

    found = {}
    for name, stats in zip(layers, run_chunked(runtime, images.shape[0], size, tiling, step, [encoder])):
        mean, std = stats[:, 0], stats[:, 1]
        if average:
            mean, std = mean.mean(dim=0, keepdim=True), std.mean(dim=0, keepdim=True)
        found[name] = (mean, std)
    return AdaINStyle(found, encoder.identity, encoder.name)


def _shared_levels(styles: Sequence[AdaINStyle]) -> list[str]:
    return [name for name in styles[0].levels if all(name in s.levels for s in styles)]


def stack_styles(styles: Sequence[AdaINStyle]) -> AdaINStyle:
    """One style batch of the given styles (each of one or more), in order; all from one encoder."""
    first = styles[0]
    for i, other in enumerate(styles[1:], start=2):
        _check_same_encoder("style 1", first, f"style {i}", other)
    return AdaINStyle({name: (torch.cat([s.levels[name][0] for s in styles]),
                              torch.cat([s.levels[name][1] for s in styles])) for name in _shared_levels(styles)},
                      first.encoder_id, first.encoder_name, first.layer)


def blend(features: AdaINFeatures, style: AdaINStyle, alpha: float = 1.0, mask: Tensor | None = None,
          content_stats: dict[str, tuple[Tensor, Tensor]] | None = None, in_place: bool = False) -> AdaINFeatures:
    """AdaIN with the content-style trade-off ``alpha``; with a (soft) mask, only inside it, with the content's
    statistics taken there. Every level the features carry is blended alike; chained blends add up (see
    AdaINFeatures), so their order does not matter.

    ``content_stats`` (level name -> content mean and std ``[B, C]``, no mask) replaces each image's own
    statistics, e.g. by statistics pooled over a clip's frames so the picture does not pump (video.py).

    ``in_place`` (one blend, no mask) overwrites the content's tensors with the targets and returns them as the
    content (``without_content``'s result), for callers that decode once and never read ``features`` again:
    the one-node transfer and video hold every level once instead of twice (at 1 megapixel, 480 MB less)."""
    if content_stats is not None and mask is not None:
        raise ValueError("content_stats and mask are exclusive")
    if in_place and (mask is not None or features.weighted):
        raise ValueError("blend works in place only as the first blend, without a mask")
    _check_same_encoder("the content features", features, "the style", style)
    alpha = check_unit(alpha, "alpha")
    missing = [name for name in features.content if name not in style.levels]
    if missing:
        raise AdaINInputError(f"the features carry {missing} for a skip decoder, but the style has no statistics "
                              "there (a preset saved before skip decoders?): compute the style again from its "
                              "image with AdaIN Style Statistics, and save it again")
    index = batch_index(features.count, style.count, "the content", "the style")
    weighted, cover = {}, {}
    with torch.inference_mode():
        for name, content in features.content.items():
            mean, std = (t[index].to(content.device, content.dtype) for t in style.levels[name])
            if mask is None:
                weight = torch.ones(1, 1, 1, 1, device=content.device, dtype=content.dtype)
                own = (content_stats or {}).get(name)
                if own is not None:
                    own = tuple(t.to(content.device, content.dtype) for t in own)
                target = adain_target(content, mean, std, alpha, own=own, in_place=in_place)
            else:
                grid = tuple(content.shape[-2:])
                weight = mask_to_weight(mask, content.shape[0], features.image_size, grid).to(content)
                target = adain_target(content, mean, std, alpha, weight) * weight
            weighted[name] = target if name not in features.weighted else features.weighted[name] + target
            cover[name] = weight if name not in features.cover else features.cover[name] + weight
    if in_place:
        return dataclasses.replace(features, content=weighted)
    return dataclasses.replace(features, weighted=weighted, cover=cover)


def clip_statistics(features: AdaINFeatures, window: int) -> dict[str, tuple[Tensor, Tensor]] | None:
    """The batch as one clip's consecutive frames: each image's content statistics pooled with those of the
    ``window - 1`` images before it, per level, for ``blend``'s ``content_stats`` (``None`` for a window of 1: each
    image's own). AdaIN Video Style Transfer's ``pool_frames`` does the same, and also starts afresh at a scene cut."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise AdaINInputError(f"pool_frames must be a whole number of frames >= 1, got {window!r}")
    if window == 1:
        return None
    return {name: MomentsWindow(window).pooled(Moments.of(level)) for name, level in features.content.items()}


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
    levels = {name: mix_statistics([s.levels[name][0][ix] for s, ix in zip(styles, indices)],
                                   [s.levels[name][1][ix] for s, ix in zip(styles, indices)], list(weights))
              for name in _shared_levels(styles)}
    first = styles[0]
    return AdaINStyle(levels, first.encoder_id, first.encoder_name, first.layer)


def _decoder_run(decoder: Decoder, device: torch.device) -> Callable[..., Tensor]:
    return lambda *levels: decoder.network.infer(*(_to_device(t, device) for t in levels)).float()


def decode(decoder: Decoder, features: AdaINFeatures, runtime: Runtime,
           tiling: Tiling = DEFAULT_TILING) -> Tensor:
    """Decode features to RGB ``[B, 3, H, W]`` in 0..1 at the size of the image that was encoded."""
    network = decoder.network
    channels = network.in_channels
    if _channels(features) != channels:
        raise AdaINInputError(f"the decoder expects {channels}-channel features, got {_channels(features)}")
    missing = [name for name in network.levels if name not in features.content]
    if missing:
        raise AdaINInputError(f"{decoder.name} is a skip decoder: it also takes the features at "
                              f"{list(network.levels[1:])}, which these were encoded without. Connect the decoder "
                              "to AdaIN Encode's 'decoder' input, so it encodes them too")
    combined = features.levels
    levels = [combined[name] for name in network.levels]
    h, w = features.image_size
    device, out = runtime.compute_device(), runtime.output_device()
    fh, fw = levels[0].shape[-2:]
    size = (fh * GRID, fw * GRID)

    run = _decoder_run(decoder, device)

    def step(a: int, b: int, tiling: Tiling, steps: Steps) -> Tensor:
        with _compute(decoder, device):
            if tiling.applies(*size):
                images = []
                for i in range(a, b):
                    image = [t[i:i + 1] for t in levels]
                    images.append(decode_tiled(run, lambda *tile: [cut(t, fh, *tile) for t in image], (fh, fw),
                                               tiling, out, steps.tick))
                image = torch.cat(images)
            else:
                image = run(*(t[a:b] for t in levels))
                steps.tick(b - a)
            return image[..., :h, :w].clamp(0.0, 1.0).to(out)

    return _checked(run_chunked(runtime, features.count, size, tiling, step, [decoder]))


def _checked(image: Tensor) -> Tensor:
    if not torch.isfinite(image).all():
        raise AdaINInputError("the decoder produced NaN or infinite values; the decoder file is probably "
                              "corrupt, or its precision (fp16) overflows: load it with precision fp32")
    return image


def finer_levels_fit(size: tuple[int, int], finer: Sequence[str], tiling: Tiling, dtype: torch.dtype) -> bool:
    """Whether the one-node transfer keeps an image's ``finer`` levels from its first pass (``_stylize_tiled``):
    when they take no more than one tile's working memory (encoded tiles take their receptive field whatever the
    overlap, so the kept levels are those of the whole image, as encoding them again would give)."""
    if not finer:
        return False
    pixels = size[0] * size[1]
    needed = sum(ENCODER_LAYERS[name].channels * pixels // ENCODER_LAYERS[name].stride ** 2 for name in finer)
    return needed * dtype.itemsize <= tiling.working_pixels(*size) * BYTES_PER_PIXEL


def _stylize_tiled(encoder: Encoder, decoder: Decoder, images: Tensor, style: AdaINStyle, alpha: float,
                   runtime: Runtime, tiling: Tiling) -> Tensor:
    """Style transfer of large images in memory bounded by the tile and the AdaIN layer's features, whatever
    levels the decoder takes. A first pass over the tiles accumulates every level's whole-image statistics and
    keeps only the AdaIN layer's features as the encoder computed them (bf16 under auto precision: 16 bytes an
    image pixel, against 12 for the image itself). The second pass, tile by tile, encodes the finer levels from
    the image with their receptive field as context (so they are exact), AdaINs every level and decodes into the
    one output image. (Keeping the encoder's first pooling instead of the image would spare the second pass the
    full-resolution layers but hold 32 bytes a pixel more; bench_memory measured no time it saves.)

    Encoding the finer levels again costs about half an encoder pass per tile. When they fit in one tile's working
    memory (``finer_levels_fit``: up to about 4 megapixels at the default tile), the first pass keeps them instead and
    the second only decodes: memory stays bounded by the tile (at most twice its working memory), time is about the
    relu4_1 decoder's. A level at full resolution (relu1_1) is never kept: it is the encoder's first convolution,
    cheaper to compute again per tile than its 64 values a pixel are to hold."""
    network, vgg = decoder.network, encoder.network
    if network.in_channels != int(style.mean.shape[-1]):
        raise AdaINInputError(f"the decoder expects {network.in_channels}-channel features, got {style.mean.shape[-1]}")
    layers, finer = network.levels, network.levels[1:]
    device, out = runtime.compute_device(), runtime.output_device()
    h, w = images.shape[-2:]
    size = tuple(pad_for_encoder(images[:1, :1]).shape[-2:])
    fh, fw = size[0] // GRID, size[1] // GRID
    index = batch_index(images.shape[0], style.count, "the content", "the style")
    ends = tuple(ENCODER_LAYERS[name].end for name in layers)
    keepable = tuple(name for name in finer if ENCODER_LAYERS[name].stride > 1)
    run_decoder = _decoder_run(decoder, device)

    def step(a: int, b: int, tiling: Tiling, steps: Steps) -> Tensor:
        results = []
        fits = finer_levels_fit(size, keepable, tiling, resolve_precision(encoder.precision, device))
        kept_levels = layers[:1] + (keepable if fits else ())
        again = tuple(name for name in finer if name not in kept_levels)  # encoded per decoder tile
        margin, again_ends = context_cells(again), tuple(ENCODER_LAYERS[name].end for name in again)
        for i in range(a, b):
            image = pad_for_encoder(images[i:i + 1])
            kept: dict[str, Tensor] = {}  # as computed (channels_last: no transposing copy)

            def keep(region: tuple[int, int, int, int], parts: list[Tensor]) -> None:
                for name, part in zip(layers, parts):
                    if name not in kept_levels:
                        continue
                    if name not in kept:
                        stride = ENCODER_LAYERS[name].stride
                        kept[name] = torch.empty(1, part.shape[1], size[0] // stride, size[1] // stride,
                                                 dtype=part.dtype, device=out, memory_format=torch.channels_last)
                    cut(kept[name], fh, *region).copy_(part)

            with _compute(encoder, device):
                run = lambda x: vgg.run_fast(_to_device(x, device), 0, ends)  # noqa: E731
                own = {name: m.mean_std() for name, m in _image_moments(run, image, layers, tiling, steps,
                                                                        keep=keep).items()}

            def restyle(name: str, x: Tensor) -> Tensor:
                mean, std = (t[index[i]:index[i] + 1].to(x.device) for t in style.levels[name])
                work = x.float()  # a copy under bf16, else x itself: a view of what is kept, read by other tiles
                return adain_target(work, mean, std, alpha, own=tuple(t.to(x.device) for t in own[name]),
                                    in_place=work is not x)

            def levels_at(ya: int, yb: int, xa: int, xb: int) -> list[Tensor]:
                found = {name: cut(kept[name], fh, ya, yb, xa, xb) for name in kept}
                if again:
                    ca, cb = max(ya - margin, 0), min(yb + margin, fh)
                    da, db = max(xa - margin, 0), min(xb + margin, fw)
                    with _compute(encoder, device):
                        parts = vgg.run_fast(_to_device(cut(image, fh, ca, cb, da, db), device), 0, again_ends)
                    found.update((name, cut(part, cb - ca, ya - ca, yb - ca, xa - da, xb - da))
                                 for name, part in zip(again, parts))
                return [restyle(name, found[name]) for name in layers]

            with _compute(decoder, device):
                decoded = decode_tiled(run_decoder, levels_at, (fh, fw), tiling, out, steps.tick)
                results.append(decoded[..., :h, :w].clamp_(0.0, 1.0))
        return results[0] if len(results) == 1 else torch.cat(results)

    return _checked(run_chunked(runtime, images.shape[0], size, tiling, step, [encoder, decoder], passes=2))


def stylize(encoder: Encoder, decoder: Decoder, content: Tensor, style: Tensor, runtime: Runtime,
            alpha: float = 1.0, color: str = "off", tiling: Tiling = DEFAULT_TILING, detail: float = 0.0,
            boost: float = 0.0, refine: int = 0) -> Tensor:
    """One-call style transfer of RGB ``[B, 3, H, W]`` content with a style batch of 1 or B; ``detail`` adds
    that much of the content's own detail layer to the result (``with_content_detail``); ``boost`` decodes a
    second time, asking past what a first output missed of the style's statistics (``boosted_style``);
    ``refine`` takes that many gradient steps on the paper's loss first (``refined_style``)."""
    if color not in COLOR_MODES:
        raise AdaINInputError(f"preserve_color must be one of {COLOR_MODES}, got {color!r}")
    alpha, detail = check_unit(alpha, "alpha"), check_unit(detail, "content_detail")
    boost, refine = check_unit(boost, "style_boost"), check_refine_steps(refine)
    index = batch_index(content.shape[0], style.shape[0], "the content", "the style")
    if color == "match style colors":
        style = match_color(style[index], content)
    elif color == "luminance only":
        style = luminance_as_rgb(style[index], like=content)
    stats = style_statistics(encoder, style, runtime, tiling=tiling)
    source = luminance_as_rgb(content) if color == "luminance only" else content

    def transfer(targets: AdaINStyle, strength: float) -> Tensor:
        if tiling.applies(*pad_for_encoder(source[:1, :1]).shape[-2:]):
            return _stylize_tiled(encoder, decoder, source, targets, strength, runtime, tiling)
        styled = blend(encode(encoder, source, runtime, tiling, decoder.network.levels), targets, strength,
                       in_place=True)
        return decode(decoder, styled, runtime, tiling)

    if boost > 0:  # the decoder's shortfall is measured at alpha 1, against the style itself
        stats = boosted_style(encoder, decoder, stats, transfer(stats, 1.0), boost, runtime, tiling)
    if refine > 0:
        stats = refined_style(encoder, decoder, source, stats, refine, runtime)
    image = transfer(stats, alpha)
    image = transfer_luminance(content.to(image), image) if color == "luminance only" else image
    return with_content_detail(image, content, detail)


def boosted_style(encoder: Encoder, decoder: Decoder, style: AdaINStyle, output: Tensor, boost: float,
                  runtime: Runtime, tiling: Tiling = DEFAULT_TILING) -> AdaINStyle:
    """Each content image's style statistics to transfer it with again, so that it lands nearer the style than
    ``output``, its transfer at alpha 1, did: the style's statistics moved by ``boost`` x what ``output`` missed of
    them (``corrected_statistics``) at every level the decoder takes. Alpha then trades the boosted style against
    the content as it does the style (measured: about 4 % more style than alpha alone at equal SSIM, where aiming
    the correction at alpha's own blend of statistics lost structure). Costs an encoder pass over the output."""
    boost = check_unit(boost, "style_boost")
    missing = [name for name in decoder.network.levels if name not in style.levels]
    if missing:
        raise AdaINInputError(f"{decoder.name} also takes {missing}, where the style has no statistics (a preset "
                              "saved before skip decoders?): compute the style again from its image with AdaIN Style "
                              "Stats")
    index = batch_index(output.shape[0], style.count, "the output", "the style")
    measured = style_statistics(encoder, output, runtime, tiling=tiling)
    _check_same_encoder("the style", style, "the output's statistics", measured)
    levels = {name: tuple(t[index] for t in stats) for name, stats in style.levels.items()}  # one row per image
    levels.update((name, corrected_statistics(levels[name], measured.levels[name], boost))
                  for name in decoder.network.levels)
    return dataclasses.replace(style, levels=levels)


def boosted_style_for(encoder: Encoder, decoder: Decoder, features: AdaINFeatures, style: AdaINStyle, boost: float,
                      runtime: Runtime, tiling: Tiling = DEFAULT_TILING) -> AdaINStyle:
    """``boosted_style`` for content already encoded: its first transfer (blend at alpha 1, decode) is made here;
    ``features`` are left as they were, for the second."""
    first = decode(decoder, blend(features, style, 1.0).without_content(), runtime, tiling)
    return boosted_style(encoder, decoder, style, first, boost, runtime, tiling)


def check_refine_steps(steps: int) -> int:
    if isinstance(steps, bool) or int(steps) != steps or not 0 <= steps <= refine.MAX_STEPS:
        raise AdaINInputError(f"style_refine must be a whole number of steps from 0 to {refine.MAX_STEPS}, got "
                              f"{steps!r}")
    return int(steps)


def refined_style(encoder: Encoder, decoder: Decoder, content: Tensor, style: AdaINStyle, steps: int,
                  runtime: Runtime) -> AdaINStyle:
    """Each content image's style statistics after ``steps`` gradient steps on the paper's loss of its transfer at
    alpha 1 (``refine.refine_targets``): one row per image, for every level the decoder takes, so a transfer at any
    alpha, with tiles, uses them as it would the style's. Each step costs two to three transfers of the refined
    size, and memory grows with it (gradients, ``refine.BYTES_PER_PIXEL``): images above ``refine.MAX_PIXELS`` are
    refined on a copy scaled down to it (their targets then a little less exact), and on out-of-memory the copy is
    halved, down to ``refine.MIN_PIXELS``."""
    steps = check_refine_steps(steps)
    missing = [name for name in STYLE_LAYERS if name not in style.levels]
    if missing:
        raise AdaINInputError(f"style_refine needs the style's statistics at {list(STYLE_LAYERS)}; this style lacks "
                              f"{missing} (a preset saved before skip decoders?): compute it again from its image "
                              "with AdaIN Style Stats")
    _check_same_encoder("style_refine's encoder", _statistics_of(encoder), "the style", style)
    if steps == 0:
        return style
    index = batch_index(content.shape[0], style.count, "the content", "the style")
    styles = [{name: tuple(t[index[i]:index[i] + 1] for t in style.levels[name]) for name in STYLE_LAYERS}
              for i in range(content.shape[0])]
    pixels = min(refine.MAX_PIXELS, content.shape[-2] * content.shape[-1])
    while True:
        try:
            rows = _refine_at(encoder, decoder, content, styles, steps, runtime, pixels)
            break
        except Exception as error:
            if not runtime.is_out_of_memory(error) or pixels <= refine.MIN_PIXELS:
                raise
            pixels = max(refine.MIN_PIXELS, pixels // 2)
            log.warning("style_refine: out of memory; refining on a copy of %d pixels", pixels)
            runtime.release_cache()
    levels = {name: tuple(t[index] for t in stats) for name, stats in style.levels.items()}
    levels.update((name, tuple(torch.cat([row[name][k].to(levels[name][k]) for row in rows]) for k in range(2)))
                  for name in decoder.network.levels)
    return dataclasses.replace(style, levels=levels)


def _refine_at(encoder: Encoder, decoder: Decoder, content: Tensor, styles: list[refine.Stats], steps: int,
               runtime: Runtime, pixels: int) -> list[refine.Stats]:
    """``refine.refine_targets`` of each content image scaled to at most ``pixels``, with the host asked for the
    room first (ComfyUI then moves other models off the device)."""
    scale = math.sqrt(pixels / (content.shape[-2] * content.shape[-1]))
    if scale < 1:
        size = (max(1, round(content.shape[-2] * scale)), max(1, round(content.shape[-1] * scale)))
        content = torch.nn.functional.interpolate(content.float(), size=size, mode="bilinear", antialias=True,
                                                  align_corners=False)
    content = pad_for_encoder(content)
    for model in (encoder, decoder):
        runtime.load(model, content.shape[-2] * content.shape[-1] * refine.BYTES_PER_PIXEL)
    pictures = [(content[i:i + 1], styles[i]) for i in range(content.shape[0])]
    device = runtime.compute_device()
    dtype = resolve_precision(decoder.precision, device, training=True)
    dtype = torch.float32 if dtype == torch.float16 else dtype  # fp16 gradients would need loss scaling
    return refine.refine_targets(encoder.network, decoder.network, pictures, steps, device, dtype,
                                 runtime.check_interrupt)


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
