"""Reading, checking and writing weight files: safetensors first, legacy .pth only without pickle code.

``torch.load(weights_only=True)`` refuses any pickle that would construct arbitrary objects, so
a downloaded .pth can never run code here; every tensor is also checked for finiteness.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..errors import WeightFileError
from .loaded import LoadedModel
from .networks import RELEASED_VGG_MODULES, AdaINDecoder, VGGEncoder, vgg19_modules

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
FORMAT_VERSION = "1"
# What atomic_write leaves if killed mid-write: its ".NAME.<8 hex>.tmp", or the ".tmpXXXXXX" that
# safetensors writes through inside it.
TEMPORARY_NAME = re.compile(r"^\.(?:(?P<name>.+)\.[0-9a-f]{8}\.tmp|tmp\w{6})$")


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a weight file on the CPU, with the safetensors metadata (empty for .pth)."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such weight file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                tensors = {key: f.get_tensor(key) for key in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise WeightFileError(f"{path}: not a readable safetensors file ({exc}); the file is truncated "
                                  "or corrupt, download or convert it again") from exc
    elif suffix in PICKLE_SUFFIXES:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler raises many types; none may escape as a crash
            raise WeightFileError(f"{path}: refused to load this .pth ({type(exc).__name__}: {exc}). Only plain "
                                  "tensor state dicts are accepted (torch.load weights_only=True); the file is "
                                  "corrupt, truncated or contains code") from exc
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
            raise WeightFileError(f"{path}: expected a state dict of tensors, found {type(loaded).__name__}")
        tensors, metadata = dict(loaded), {}
    else:
        raise WeightFileError(f"{path}: unsupported weight file type {suffix!r}; use one of {WEIGHT_SUFFIXES}")
    return tensors, metadata


def _check_layout(path: Path, tensors: dict[str, Tensor], expected: dict[str, Tensor],
                  optional: dict[str, Tensor], what: str) -> None:
    """Strict key and shape check; optional keys (the unused rest of a released VGG19) may be present."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected) - set(optional))
    allowed = {**optional, **expected}
    misshaped = [f"{key}: file {tuple(tensors[key].shape)} vs network {tuple(allowed[key].shape)}"
                 for key in sorted(set(tensors) & set(allowed)) if tensors[key].shape != allowed[key].shape]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:12]}{' ...' if len(unexpected) > 12 else ''}")
        if misshaped:
            parts.append(f"mis-shaped keys {misshaped}")
        raise WeightFileError(f"{path}: does not fit the {what} ({'; '.join(parts)}). Is it the right file "
                              f"for this loader? The {what} expects the layout of the reference AdaIN port")
    # checked as float32, the precision the networks load: float64 values beyond its range become inf
    bad = [key for key in expected if not torch.isfinite(tensors[key].float()).all()]
    if bad:
        raise WeightFileError(f"{path}: tensors {bad} contain NaN or infinite values (in float32); the file is "
                              "corrupt")


def weights_identity(module: nn.Module) -> str:
    """A short hash of a module's tensors: equal for the same weights in any file format."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load(model: nn.Module, path: str | os.PathLike, what: str,
          optional: dict[str, Tensor] | None = None) -> LoadedModel:
    path = Path(path)
    tensors, metadata = read_tensors(path)
    expected = model.state_dict()
    _check_layout(path, tensors, expected, optional or {}, what)
    model.load_state_dict({key: tensors[key].float() for key in expected})
    model.requires_grad_(False).eval()
    return LoadedModel(model, weights_identity(model), path.name, metadata=metadata)


def _released_vgg_rest() -> dict[str, Tensor]:
    """Keys of the released 53-module VGG19 beyond relu4_1, accepted and ignored when loading."""
    full = nn.Sequential(*vgg19_modules(RELEASED_VGG_MODULES)).state_dict()
    used = VGGEncoder().state_dict()
    return {key: value for key, value in full.items() if key not in used}


def load_encoder(path: str | os.PathLike) -> LoadedModel[VGGEncoder]:
    """A frozen encoder from ``vgg_normalised.pth`` (all 53 modules) or a safetensors file of its first 31."""
    return _load(VGGEncoder(), path, "VGG19 encoder", optional=_released_vgg_rest())


def load_decoder(path: str | os.PathLike) -> LoadedModel[AdaINDecoder]:
    """A frozen decoder from ``decoder.pth`` or a safetensors file with the same keys."""
    return _load(AdaINDecoder(), path, "AdaIN decoder")


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(temporary_path)`` then rename over ``path``: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # mode 0o666 less the umask, like any new file (mkstemp's 0o600 would make outputs private)
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    mode = os.stat(tmp).st_mode
    try:
        write(tmp)
        os.chmod(tmp, mode)  # writers that replace the file themselves (safetensors does) make it 0o600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, object]) -> None:
    """Atomically write contiguous CPU tensors with string metadata (non-strings JSON-encoded)."""
    meta = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    meta.setdefault("format_version", FORMAT_VERSION)
    data = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    atomic_write(path, lambda tmp: save_file(data, tmp, metadata=meta))


def convert_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike, kind: str = "auto") -> str:
    """Convert a released ``.pth`` to safetensors (the encoder truncated to relu4_1). Returns the kind."""
    tensors, _ = read_tensors(src)
    if kind == "auto":
        kind = "encoder" if "0.weight" in tensors and tuple(tensors["0.weight"].shape) == (3, 3, 1, 1) else "decoder"
    if kind == "encoder":
        model: LoadedModel = load_encoder(src)
    elif kind == "decoder":
        model = load_decoder(src)
    else:
        raise ValueError(f"kind must be 'auto', 'encoder' or 'decoder', got {kind!r}")
    metadata = {"kind": kind, "source_file": Path(src).name, "source_sha256": file_sha256(src)}
    save_safetensors(model.network.state_dict(), dst, metadata)
    log.info("wrote %s %s (%s)", kind, dst, model.identity)
    return kind


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
