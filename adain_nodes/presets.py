"""Style presets: the statistics of a style stored as a small safetensors file, reusable without the image.

Tensors ``mean`` and ``std`` are the ADAIN_LAYER statistics ``[styles, channels]``; ``mean.relu3_1`` and so on
the SKIP_LAYERS ones a skip decoder needs (absent in presets saved before skip decoders)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .errors import WeightFileError
from .models.weights import read_tensors, save_safetensors
from .core.layers import ENCODER_LAYERS, SKIP_LAYERS
from .core.stats import MAX_MAGNITUDE
from .pipeline import AdaINStyle

PRESET_FORMAT = "adain-style"
# A preset is two [styles, channels] float tables: a few kB; anything near this is not a preset.
PRESET_MAX_BYTES = 4 << 20


def save_style(style: AdaINStyle, path: str | Path, source: str = "", overwrite: bool = True) -> None:
    """Write atomically: a preset is replaced whole or not at all. Without ``overwrite`` the name is claimed
    atomically (FileExistsError if it exists), so of two savers at once exactly one succeeds."""
    metadata = {"format": PRESET_FORMAT, "encoder_id": style.encoder_id, "encoder_name": style.encoder_name,
                "layer": style.layer, "styles": str(style.count), "source": source}
    tensors = {"mean": style.mean.float(), "std": style.std.float()}
    for name, (mean, std) in style.skips.items():
        tensors[f"mean.{name}"], tensors[f"std.{name}"] = mean.float(), std.float()
    save_safetensors(tensors, path, metadata, overwrite)


def _statistics(path: str | Path, mean: Tensor, std: Tensor, what: str) -> tuple[Tensor, Tensor]:
    mean, std = mean.float(), std.float()
    if mean.dim() != 2 or mean.shape != std.shape or mean.shape[0] == 0:
        raise WeightFileError(f"{path}: {what} mean and std must both be [styles, channels], got "
                              f"{list(mean.shape)} and {list(std.shape)}")
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std <= 0).any():
        raise WeightFileError(f"{path}: {what} statistics contain NaN, infinite or non-positive std values; "
                              "the preset is corrupt, save it again")
    largest = float(torch.maximum(mean.abs().max(), std.max()))
    if largest > MAX_MAGNITUDE:
        raise WeightFileError(f"{path}: {what} statistics reach {largest:.3g}, beyond the {MAX_MAGNITUDE:g} no encoder "
                              "gives (they would decode to a flat picture); the preset is corrupt, save it again")
    return mean, std


def load_style(path: str | Path) -> AdaINStyle:
    tensors, meta = read_tensors(path, max_bytes=PRESET_MAX_BYTES)
    skips = [name for name in SKIP_LAYERS if f"mean.{name}" in tensors or f"std.{name}" in tensors]
    allowed = {"mean", "std"} | {f"{kind}.{name}" for name in skips for kind in ("mean", "std")}
    if meta.get("format") != PRESET_FORMAT or set(tensors) != allowed:
        raise WeightFileError(f"{path}: not an AdaIN style preset (expected tensors 'mean' and 'std' (and both "
                              f"'mean.L' and 'std.L' of a level L in {list(SKIP_LAYERS)}) and format "
                              f"{PRESET_FORMAT!r}; found {sorted(tensors)} and format {meta.get('format')!r})")
    mean, std = _statistics(path, tensors["mean"], tensors["std"], "the")
    levels = {name: _statistics(path, tensors[f"mean.{name}"], tensors[f"std.{name}"], name) for name in skips}
    if any(m.shape != (mean.shape[0], ENCODER_LAYERS[name].channels) for name, (m, _) in levels.items()):
        raise WeightFileError(f"{path}: its levels {skips} do not hold {mean.shape[0]} styles of the encoder's "
                              "channels; the preset is corrupt, save it again")
    for key in ("encoder_id", "layer"):
        if not meta.get(key):
            raise WeightFileError(f"{path}: preset metadata lacks {key!r}; save it again with AdaINSaveStyle")
    return AdaINStyle(mean, std, meta["encoder_id"], meta.get("encoder_name", "unknown"), meta["layer"], levels)
