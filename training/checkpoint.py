"""Checkpoints that make resume exact, and the decoder file the nodes load.

A checkpoint holds the decoder, the optimiser, the iteration, every RNG state and the data
stream position, as plain tensors and containers so ``torch.load(weights_only=True)`` reads it
(the pack never unpickles code). Both files are written atomically.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adain_nodes.atomic_files import atomic_write, remove_stale_temporaries
from adain_nodes.core.layers import ADAIN_LAYER
from adain_nodes.file_walk import is_regular_file
from adain_nodes.models.weights import save_safetensors

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def rng_states() -> dict[str, Any]:
    """Every generator a run may touch (torch, CUDA, numpy, python), in weights_only-safe form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, decoder: nn.Module, optimizer: torch.optim.Optimizer, iteration: int,
                    data_state: dict[str, int], config_json: str, extra: dict[str, Any] | None = None) -> None:
    state = {
        "version": CHECKPOINT_VERSION,
        "decoder": {k: v.detach().cpu() for k, v in decoder.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "rng": rng_states(),
        "data": data_state,
        "config": config_json,
        **(extra or {}),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    log.info("checkpoint %s at iteration %d", path, iteration)


# What a checkpoint holds, by type: anything else is not one of this trainer's.
CHECKPOINT_FIELDS = {"decoder": dict, "optimizer": dict, "iteration": int, "rng": dict, "data": dict, "config": str}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by ``save_checkpoint``, or a ValueError naming the file and what is wrong with it
    (truncated, foreign, of another version): resuming from it could only fail later, less clearly."""
    if not is_regular_file(path):
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    how = "start a new run (another --run-dir) or resume from a good checkpoint"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files raise many types; none may escape as a traceback
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}); {how}") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        version = state.get("version") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a checkpoint of this trainer (version {version!r}, expected "
                         f"{CHECKPOINT_VERSION}); {how}")
    wrong = [key for key, kind in CHECKPOINT_FIELDS.items() if not isinstance(state.get(key), kind)]
    try:
        config = json.loads(state["config"]) if "config" not in wrong else None
    except ValueError:
        config = None
    if wrong or not isinstance(config, dict):
        raise ValueError(f"{path}: a checkpoint lacking or garbling {wrong or ['config']}; {how}")
    bad = [key for key, value in state["decoder"].items() if not (isinstance(value, torch.Tensor)
                                                                    and torch.isfinite(value).all())]
    if bad:
        raise ValueError(f"{path}: the checkpoint's decoder tensors {bad[:5]} are not finite numbers; {how}")
    state["config"] = config
    return state


def save_decoder(path: Path, decoder: nn.Module, metadata: dict[str, Any]) -> None:
    """The decoder as ``load_decoder`` reads it, with what is needed to reproduce and trust it."""
    meta = {"format": "adain-decoder", "kind": "decoder", "adain_layer": ADAIN_LAYER, "levels": list(decoder.levels),
            "blocks": list(getattr(decoder, "blocks", ())), **metadata}
    save_safetensors({k: v.detach().float().cpu() for k, v in decoder.state_dict().items()}, path, meta)


def remove_run_temporaries(run_dir: Path, out: Path) -> None:
    """Delete what a killed run left half-written: any temporary in its own run directory, and beside the
    output only the output's own temporaries and those of writers that are gone (that folder may be shared,
    e.g. a models folder)."""
    remove_stale_temporaries(run_dir, owned_folder=True)
    remove_stale_temporaries(out.parent, out.name)
