"""Tiled encoding and decoding: peak memory bounded by the tile, not the image.

Tiles are aligned to the encoder's GRID (the finer levels a skip decoder takes are cut at the same places).
Encoded tiles are extended by the encoder's receptive radius on every side, whatever the overlap, so each tile's
core has exactly the features of the whole image; AdaIN statistics are then taken over the whole image, never per
tile. Decoded tiles are extended by the overlap and cross-faded over it, so no seam survives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from .core.layers import ADAIN_LAYER, GRID, MIN_SIZE
from .errors import AdaINInputError
from .models.networks import receptive_radius

MAX_OVERLAP = 1024
# The networks' reflection padding needs MIN_SIZE pixels a side: a thinner tile would crash.
MIN_TILE_FEATURES = MIN_SIZE // GRID
# The smallest tile_size: below it a tile's core is small against the overlap around it.
MIN_TILE_SIZE = 4 * MIN_SIZE
MIN_BACKOFF_TILE = 128  # the out-of-memory back-off gives up below this tile size (as ComfyUI's upscale node)


def context_cells(layers: Sequence[str]) -> int:
    """GRID cells of context a tile encoded to ``layers`` needs so its core is exact: the deepest one's receptive
    radius, rounded up to the GRID."""
    return -(-max((receptive_radius(name) for name in layers), default=0) // GRID)


# The most context an encoded tile takes (relu4_1's receptive radius, 37 px, on the GRID: 40 px).
MAX_ENCODER_CONTEXT = context_cells((ADAIN_LAYER,)) * GRID


@dataclass(frozen=True)
class Tiling:
    """``size``: images with a side above it are processed in tiles of this many pixels (0: never).
    ``overlap``: pixels added around each decoded tile and cross-faded (encoded tiles take the encoder's receptive
    radius instead, so their features are exact whatever the overlap)."""

    size: int = 1024
    overlap: int = 64

    def __post_init__(self) -> None:
        if self.size and self.size < MIN_TILE_SIZE:
            raise AdaINInputError(f"tile_size must be 0 (no tiling) or at least {MIN_TILE_SIZE} pixels, got "
                                  f"{self.size}")
        if not 0 <= self.overlap <= MAX_OVERLAP:
            raise AdaINInputError(f"tile_overlap must be from 0 to {MAX_OVERLAP} pixels, got {self.overlap}")

    def applies(self, height: int, width: int) -> bool:
        return bool(self.size) and max(height, width) > self.size

    def working_pixels(self, height: int, width: int) -> int:
        """Pixels processed at once for one image: a tile with its overlap or encoder context, or the whole image."""
        if not self.applies(height, width):
            return height * width
        side = self.size + 2 * max(self.overlap, MAX_ENCODER_CONTEXT)
        return min(side, height) * min(side, width)

    def halved(self, height: int, width: int) -> "Tiling | None":
        """Tiles of half the current side (of the image's long side if it is not tiled yet), on the
        GRID; None below ``MIN_BACKOFF_TILE``: what to retry with after running out of memory."""
        side = self.size if self.applies(height, width) else max(height, width)
        size = side // 2 // GRID * GRID
        return Tiling(size, self.overlap) if size >= MIN_BACKOFF_TILE else None


NO_TILING = Tiling(size=0)


def _spans(length: int, tiling: Tiling, margin: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop) of each core span along an axis of ``length`` features and of its extension by ``margin``
    features (default: the overlap), in feature units; an extension is widened inwards to the networks' minimum (a
    last core of one feature, at overlap 0, would be too thin)."""
    core = max(tiling.size // GRID, 1)
    margin = -(-tiling.overlap // GRID) if margin is None else margin
    for start in range(0, length, core):
        stop = min(start + core, length)
        lo = max(min(start - margin, stop - MIN_TILE_FEATURES), 0)
        yield start, stop, lo, min(max(stop + margin, lo + MIN_TILE_FEATURES), length)


def _tiles(h: int, w: int, tiling: Tiling, margin: int | None = None):
    for y0, y1, ya, yb in _spans(h, tiling, margin):
        for x0, x1, xa, xb in _spans(w, tiling, margin):
            yield (y0, y1, ya, yb), (x0, x1, xa, xb)


def tile_count(height: int, width: int, tiling: Tiling) -> int:
    """Tiles of an image of ``height`` x ``width`` padded pixels (1 when the tiling does not apply)."""
    if not tiling.applies(height, width):
        return 1
    return sum(1 for _ in _tiles(height // GRID, width // GRID, tiling))


Region = tuple[int, int, int, int]  # y0, y1, x0, x1 in features of the GRID


def encode_tiles(encode: Callable[[Tensor], list[Tensor]], image: Tensor, tiling: Tiling,
                 layers: Sequence[str]) -> Iterator[tuple[Region, list[Tensor]]]:
    """Each tile's core ``region`` of one padded image ``[1, 3, H, W]`` (H, W multiples of GRID) and the features
    of its core, one tensor per level of ``encode`` (the encoder's ``layers``), each at its own stride (GRID or a
    divisor of it): the tile's core lands at the same place of the image on every level. Each tile is encoded with
    the deepest layer's receptive radius as context, so the cores are exact. Nothing of the other tiles is kept."""
    h, w = image.shape[-2] // GRID, image.shape[-1] // GRID
    for (y0, y1, ya, yb), (x0, x1, xa, xb) in _tiles(h, w, tiling, context_cells(layers)):
        parts = encode(image[..., ya * GRID:yb * GRID, xa * GRID:xb * GRID])
        cores = []
        for part in parts:
            f = part.shape[-2] // (yb - ya)  # this level's feature pixels per GRID feature pixel
            cores.append(part[..., (y0 - ya) * f:(y1 - ya) * f, (x0 - xa) * f:(x1 - xa) * f])
        yield (y0, y1, x0, x1), cores


def encode_tiled(encode: Callable[[Tensor], list[Tensor]], image: Tensor, tiling: Tiling, layers: Sequence[str],
                 out_device: torch.device, on_tile: Callable[[], None] = lambda: None) -> list[Tensor]:
    """Features of one padded image ``[1, 3, H, W]``, computed tile by tile (``encode_tiles``) and assembled;
    ``on_tile`` runs after each tile (progress, interrupt)."""
    h, w = image.shape[-2] // GRID, image.shape[-1] // GRID
    levels: list[Tensor] = []
    for (y0, y1, x0, x1), parts in encode_tiles(encode, image, tiling, layers):
        for index, part in enumerate(parts):
            f = part.shape[-2] // (y1 - y0)
            if len(levels) <= index:
                levels.append(torch.empty(1, part.shape[1], h * f, w * f, dtype=part.dtype, device=out_device))
            levels[index][..., y0 * f:y1 * f, x0 * f:x1 * f] = part.to(out_device)
        on_tile()
    return levels


def _ramp(length: int, before: int, after: int, device: torch.device) -> Tensor:
    """1 over the core, rising from near 0 across the leading overlap and falling across the trailing one."""
    weight = torch.ones(length, device=device)
    if before:
        weight[:before] = (torch.arange(before, device=device) + 0.5) / before
    if after:
        weight[length - after:] = (torch.arange(after, 0, -1, device=device) - 0.5) / after
    return weight


def cut(level: Tensor, grid_height: int, ya: int, yb: int, xa: int, xb: int) -> Tensor:
    """The part of a level (of an image ``grid_height`` GRID features high) under GRID features [ya:yb, xa:xb]."""
    f = level.shape[-2] // grid_height
    return level[..., ya * f:yb * f, xa * f:xb * f]


def _span_ramp(start: int, stop: int, lo: int, hi: int, device: torch.device) -> Tensor:
    """The cross-fade weight along a span (``_spans``), in pixels."""
    return _ramp((hi - lo) * GRID, (start - lo) * GRID, (hi - stop) * GRID, device)


def _coverage(length: int, tiling: Tiling, device: torch.device) -> Tensor:
    """Sum over the tiles' spans of their ramps along one axis, in pixels: tiles are the product of the spans
    along each axis, so the total weight of every pixel is this along y times this along x."""
    total = torch.zeros(length * GRID, device=device)
    for start, stop, lo, hi in _spans(length, tiling):
        total[lo * GRID:hi * GRID] += _span_ramp(start, stop, lo, hi, device)
    return total


def decode_tiled(decode: Callable[..., Tensor], levels_at: Callable[[int, int, int, int], list[Tensor]],
                 grid: tuple[int, int], tiling: Tiling, out_device: torch.device,
                 on_tile: Callable[[], None] = lambda: None) -> Tensor:
    """Decode one image of ``grid`` (h, w) GRID features tile by tile, cross-fading overlaps, to ``[1, 3, 8h, 8w]``.

    ``levels_at(ya, yb, xa, xb)`` gives the decoder's inputs under the tile (each level cut to the same place:
    ``cut`` of stored levels, or levels computed for this tile only); ``on_tile`` runs after each tile. Each tile
    lands in the output already weighted by its share of the cross-fade: nothing of the image's size is held
    but the output."""
    h, w = grid
    image = torch.zeros(1, 3, h * GRID, w * GRID, device=out_device)
    total_y, total_x = _coverage(h, tiling, out_device), _coverage(w, tiling, out_device)
    for (y0, y1, ya, yb), (x0, x1, xa, xb) in _tiles(h, w, tiling):
        part = decode(*levels_at(ya, yb, xa, xb)).float().to(out_device)
        ys, xs = slice(ya * GRID, yb * GRID), slice(xa * GRID, xb * GRID)
        wy = _span_ramp(y0, y1, ya, yb, out_device) / total_y[ys]
        wx = _span_ramp(x0, x1, xa, xb, out_device) / total_x[xs]
        image[..., ys, xs] += part * (wy[:, None] * wx[None, :])
        on_tile()
    return image
