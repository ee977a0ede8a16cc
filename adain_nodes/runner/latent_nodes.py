"""ComfyUI's core LoadLatent and SaveLatent, re-implemented for headless runs.

A ``.latent`` file is safetensors with the samples under ``latent_tensor`` and an empty
``latent_format_version_0`` marker (without it, LoadLatent scales by 1/0.18215, as ComfyUI does
for files of its first format); SaveLatent writes ``{prefix}_{counter:05}_.latent`` with the API
prompt and the editor workflow as JSON metadata.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save_file

from ..atomic_files import atomic_write_new
from ..core.stats import MAX_MAGNITUDE
from .core_nodes import Folders, numbered_names, prefix_check, save_target

LATENT_SUFFIX = ".latent"
FORMAT_MARKER = "latent_format_version_0"
LEGACY_SCALE = 1.0 / 0.18215  # files without the marker hold SD1 latents before the VAE scaling


def load_latent_file(path: Path) -> dict[str, torch.Tensor]:
    """The LATENT of a .latent file; ValueError for one that holds no latent ComfyUI could have saved (no
    ``latent_tensor``, integers, NaN, or values far beyond any VAE's, which would decode to a flat picture)."""
    tensors = load_file(str(path), device="cpu")
    samples = tensors.get("latent_tensor")
    if samples is None or not samples.is_floating_point():
        found = "no 'latent_tensor'" if samples is None else f"integers ({str(samples.dtype).removeprefix('torch.')})"
        raise ValueError(f"{path}: not a latent file ({found}); save it again with SaveLatent")
    scale = 1.0 if FORMAT_MARKER in tensors else LEGACY_SCALE
    samples = samples.float() * scale
    if not torch.isfinite(samples).all() or samples.abs().max() > MAX_MAGNITUDE:
        raise ValueError(f"{path}: its values reach {float(samples.abs().max()):.3g}, beyond the {MAX_MAGNITUDE:g} "
                         "of any latent; the file is corrupt, save it again")
    return {"samples": samples}


def save_latent_file(samples: torch.Tensor, candidates: Iterable[Path], metadata: dict[str, str] | None) -> Path:
    """Write a .latent under the first of ``candidates`` that is free, claimed atomically (never overwrites)."""
    tensors = {"latent_tensor": samples.detach().cpu().contiguous(), FORMAT_MARKER: torch.tensor([])}
    return atomic_write_new(candidates, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def make_latent_nodes(folders: Folders) -> dict[str, type]:
    def latent_files() -> list[str]:
        if not folders.input_dir.is_dir():
            return []
        return sorted(f.name for f in folders.input_dir.iterdir() if f.is_file() and f.name.endswith(LATENT_SUFFIX))

    class LoadLatent:
        CATEGORY = "_for_testing"
        RETURN_TYPES = ("LATENT",)
        FUNCTION = "load"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"latent": (latent_files(),)}}

        @classmethod
        def VALIDATE_INPUTS(cls, latent):
            """A linked name is None here (as ComfyUI passes links): load checks it when it arrives."""
            return True if latent is None else folders.input_problem("latent", latent) or True

        @classmethod
        def IS_CHANGED(cls, latent):
            return hashlib.sha256(folders.input_file(latent).read_bytes()).hexdigest()

        def load(self, latent):
            path = folders.checked_input("latent", latent)
            return (load_latent_file(path),)

    class SaveLatent:
        CATEGORY = "_for_testing"
        RETURN_TYPES = ()
        FUNCTION = "save"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

        @classmethod
        def VALIDATE_INPUTS(cls, filename_prefix):
            """A prefix that leaves the output folder fails before the graph runs, as SaveImage's does; a linked
            prefix is None here (as ComfyUI passes links): saving checks it."""
            return prefix_check(folders.output_dir, filename_prefix)

        def save(self, samples, filename_prefix="latents/ComfyUI", prompt=None, extra_pnginfo=None):
            folder, subfolder, filename, counter = save_target(filename_prefix, folders.output_dir)
            metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
            metadata.update({key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()})
            path = save_latent_file(samples["samples"], numbered_names(folder, filename, counter, [], LATENT_SUFFIX),
                                    metadata)
            record: dict[str, Any] = {"filename": path.name, "subfolder": subfolder, "type": "output",
                                      "path": str(path)}
            folders.written.append(record)
            return {"ui": {"latents": [record]}}

    return {"LoadLatent": LoadLatent, "SaveLatent": SaveLatent}
