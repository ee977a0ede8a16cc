"""Style presets: the statistics of a style stored as a small safetensors file, reusable without the image."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import WeightFileError
from .models.weights import read_tensors, save_safetensors
from .pipeline import AdaINStyle

PRESET_FORMAT = "adain-style"
# A preset is two [styles, channels] float tables: a few kB; anything near this is not a preset.
PRESET_MAX_BYTES = 4 << 20


def save_style(style: AdaINStyle, path: str | Path, source: str = "", overwrite: bool = True) -> None:
    """Write atomically: a preset is replaced whole or not at all. Without ``overwrite`` the name is claimed
    atomically (FileExistsError if it exists), so of two savers at once exactly one succeeds."""
    metadata = {"format": PRESET_FORMAT, "encoder_id": style.encoder_id, "encoder_name": style.encoder_name,
                "layer": style.layer, "styles": str(style.count), "source": source}
    save_safetensors({"mean": style.mean.float(), "std": style.std.float()}, path, metadata, overwrite)


def load_style(path: str | Path) -> AdaINStyle:
    tensors, meta = read_tensors(path, max_bytes=PRESET_MAX_BYTES)
    if meta.get("format") != PRESET_FORMAT or set(tensors) != {"mean", "std"}:
        raise WeightFileError(f"{path}: not an AdaIN style preset (expected tensors 'mean' and 'std' and "
                              f"format {PRESET_FORMAT!r}; found {sorted(tensors)} and format {meta.get('format')!r})")
    mean, std = tensors["mean"].float(), tensors["std"].float()
    if mean.dim() != 2 or mean.shape != std.shape or mean.shape[0] == 0:
        raise WeightFileError(f"{path}: 'mean' and 'std' must both be [styles, channels], got "
                              f"{list(mean.shape)} and {list(std.shape)}")
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std <= 0).any():
        raise WeightFileError(f"{path}: statistics contain NaN, infinite or non-positive std values; "
                              "the preset is corrupt, save it again")
    for key in ("encoder_id", "layer"):
        if not meta.get(key):
            raise WeightFileError(f"{path}: preset metadata lacks {key!r}; save it again with AdaINSaveStyle")
    return AdaINStyle(mean, std, meta["encoder_id"], meta.get("encoder_name", "unknown"), meta["layer"])
