"""Style presets: the statistics of a style stored as a small safetensors file, reusable without the image.

Tensors ``mean`` and ``std`` are the AdaIN layer's statistics ``[styles, channels]``; ``mean.relu3_1`` and so on
those of the other levels of the layer table (absent in presets saved before skip decoders)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .errors import WeightFileError
from .models.weights import read_tensors, save_safetensors
from .core.layers import ENCODER_LAYERS
from .core.stats import MAX_MAGNITUDE
from .pipeline import AdaINStyle

PRESET_FORMAT = "adain-style"
# A preset is a few [styles, channels] float tables: a few kB; anything near this is not a preset.
PRESET_MAX_BYTES = 4 << 20


def _keys(name: str, layer: str) -> tuple[str, str]:
    """The tensor names of a level: plain ``mean``/``std`` for the AdaIN layer (as presets always had)."""
    return ("mean", "std") if name == layer else (f"mean.{name}", f"std.{name}")


def save_style(style: AdaINStyle, path: str | Path, source: str = "", overwrite: bool = True) -> None:
    """Write atomically: a preset is replaced whole or not at all. Without ``overwrite`` the name is claimed
    atomically (FileExistsError if it exists), so of two savers at once exactly one succeeds."""
    metadata = {"format": PRESET_FORMAT, "encoder_id": style.encoder_id, "encoder_name": style.encoder_name,
                "layer": style.layer, "styles": str(style.count), "source": source}
    tensors = {}
    for name, (mean, std) in style.levels.items():
        mean_key, std_key = _keys(name, style.layer)
        tensors[mean_key], tensors[std_key] = mean.float(), std.float()
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
    for key in ("encoder_id", "layer"):
        if not meta.get(key) and meta.get("format") == PRESET_FORMAT:
            raise WeightFileError(f"{path}: preset metadata lacks {key!r}; save it again with AdaINSaveStyle")
    layer = meta.get("layer", "")
    names = [name for name in ENCODER_LAYERS if any(key in tensors for key in _keys(name, layer))]
    allowed = {key for name in names for key in _keys(name, layer)}
    if meta.get("format") != PRESET_FORMAT or layer not in names or set(tensors) != allowed:
        others = [name for name in ENCODER_LAYERS if name != layer]
        raise WeightFileError(f"{path}: not an AdaIN style preset (expected tensors 'mean' and 'std' (and both "
                              f"'mean.L' and 'std.L' of a level L in {others}) and format {PRESET_FORMAT!r}; found "
                              f"{sorted(tensors)} and format {meta.get('format')!r})")
    levels = {name: _statistics(path, *(tensors[key] for key in _keys(name, layer)),
                                "the" if name == layer else name) for name in names}
    count = levels[layer][0].shape[0]
    if any(m.shape != (count, ENCODER_LAYERS[name].channels) for name, (m, _) in levels.items() if name != layer):
        raise WeightFileError(f"{path}: its levels {names} do not hold {count} styles of the encoder's "
                              "channels; the preset is corrupt, save it again")
    return AdaINStyle(levels, meta["encoder_id"], meta.get("encoder_name", "unknown"), layer)
