"""Reading, checking and writing weight files: safetensors first, legacy .pth only without pickle code.

``torch.load(weights_only=True)`` refuses any pickle that would construct arbitrary objects, so
a downloaded .pth can never run code here; every tensor is also checked for finiteness.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..atomic_files import atomic_write, atomic_write_new
from ..errors import WeightFileError
from .loaded import LoadedModel
from .networks import RELEASED_VGG_MODULES, AdaINDecoder, SkipDecoder, VGGEncoder, vgg19_modules

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
FORMAT_VERSION = "1"


# Bytes a file may declare beyond its tensors (the .pth pickle, records of the zip archive).
ARCHIVE_SLACK_BYTES = 4 << 20
# The widest accepted dtype (float64): a file of the right tensors never declares more than this per value.
MAX_BYTES_PER_VALUE = 8
# Files read without a layout to check against (presets, metadata rewrites) may declare at most this much.
UNCHECKED_MAX_BYTES = 256 << 20
_SAFETENSORS_FLOATS = {code: getattr(torch, name) for code, name in (
    ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
    ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("F8_E4M3FNUZ", "float8_e4m3fnuz"),
    ("F8_E5M2FNUZ", "float8_e5m2fnuz"), ("F8_E8M0", "float8_e8m0fnu")) if hasattr(torch, name)}
_SAFETENSORS_OTHERS = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
                       "U32": "uint32", "I64": "int64", "U64": "uint64", "C64": "complex64"}


@dataclass(frozen=True)
class Layout:
    """The tensors a network needs (``expected``) and may ignore (``optional``), by key and shape."""

    expected: dict[str, tuple[int, ...]]
    optional: dict[str, tuple[int, ...]]
    what: str

    @classmethod
    def of(cls, model: nn.Module, what: str, optional: dict[str, Tensor] | None = None) -> "Layout":
        return cls({k: tuple(v.shape) for k, v in model.state_dict().items()},
                   {k: tuple(v.shape) for k, v in (optional or {}).items()}, what)

    def max_bytes(self) -> int:
        values = sum(math.prod(shape) for shape in {**self.optional, **self.expected}.values())
        return values * MAX_BYTES_PER_VALUE + ARCHIVE_SLACK_BYTES


@dataclass(frozen=True)
class _Declared:
    """What a file says about one tensor, known before its data is read."""

    shape: tuple[int, ...]
    dtype: str
    floating: bool
    nbytes: int


def _declared_tensor(tensor: Tensor) -> _Declared:
    return _Declared(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), tensor.dtype.is_floating_point,
                     tensor.numel() * tensor.element_size())


def _declared_slice(view) -> _Declared:
    shape, code = tuple(view.get_shape()), view.get_dtype()
    dtype = _SAFETENSORS_FLOATS.get(code)
    bits = re.search(r"\d+", code)  # "I64", "BF16", "F8_E4M3"; "BOOL" is one byte
    size = math.prod(shape) * max(int(bits.group()) // 8 if bits else 1, 1)
    name = str(dtype).removeprefix("torch.") if dtype is not None else _SAFETENSORS_OTHERS.get(code, code)
    return _Declared(shape, name, dtype is not None, size)


def _check_declared(path: Path, declared: dict[str, _Declared], layout: Layout | None, max_bytes: int) -> None:
    """Refuse a file by what it declares, before any of its tensor data is read."""
    if layout is not None:
        _check_layout(path, {k: d.shape for k, d in declared.items()}, layout)
    wanted = layout.expected if layout is not None else declared
    not_float = [f"{key} ({declared[key].dtype})" for key in sorted(wanted) if not declared[key].floating]
    if not_float:
        raise WeightFileError(f"{path}: tensors {not_float} are not floating-point; network weights must be "
                              "float32, float16, bfloat16, float64 or float8. The file is not a weight file for "
                              "this network, or was quantised or corrupted")
    total = sum(d.nbytes for d in declared.values())
    if total > max_bytes:
        raise WeightFileError(f"{path}: declares {total} bytes of tensors, more than the {max_bytes} "
                              f"{'a ' + layout.what if layout is not None else 'such a file'} can need; refused "
                              "before reading them")


def _open_pth(path: Path, max_bytes: int):
    """``torch.load(weights_only=True)`` once the archive's declared (uncompressed) sizes are known to fit:
    a small compressed file cannot make the loader inflate gigabytes. Stored archives are memory-mapped,
    so no tensor data is read before its declared shape and dtype are checked."""
    mmap = False
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                records = archive.infolist()
            declared = sum(record.file_size for record in records)
            mmap = all(record.compress_type == zipfile.ZIP_STORED for record in records)
        else:  # the legacy format is read whole: its size on disk is what it takes
            declared = path.stat().st_size
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightFileError(f"{path}: not a readable .pth archive ({exc}); the file is truncated or corrupt") from exc
    if declared > max_bytes:
        raise WeightFileError(f"{path}: its archive declares {declared} bytes of data, more than the {max_bytes} "
                              "the network can need; refused before reading it (a compressed or padded file?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # the unpickler raises many types; none may escape as a crash
        raise WeightFileError(f"{path}: refused to load this .pth ({type(exc).__name__}: {exc}). Only plain "
                              "tensor state dicts are accepted (torch.load weights_only=True); the file is "
                              "corrupt, truncated or contains code") from exc


def read_tensors(path: str | os.PathLike, layout: Layout | None = None,
                 max_bytes: int = UNCHECKED_MAX_BYTES) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors of a weight file on the CPU, with the safetensors metadata (empty for .pth).

    Keys, shapes, dtypes (floating-point only) and sizes are checked against ``layout`` (or
    ``max_bytes``) from what the file declares, before any tensor data is read; with a layout
    only its expected tensors are returned, in the file's dtype.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such weight file")
    if layout is not None:
        max_bytes = layout.max_bytes()
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                _check_declared(path, {key: _declared_slice(f.get_slice(key)) for key in f.keys()}, layout, max_bytes)
                keys = list(layout.expected) if layout is not None else list(f.keys())
                tensors = {key: f.get_tensor(key) for key in keys}
        except WeightFileError:
            raise
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise WeightFileError(f"{path}: not a readable safetensors file ({exc}); the file is truncated "
                                  "or corrupt, download or convert it again") from exc
    elif suffix in PICKLE_SUFFIXES:
        loaded = _open_pth(path, max_bytes)
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
            raise WeightFileError(f"{path}: expected a state dict of tensors, found {type(loaded).__name__}")
        _check_declared(path, {key: _declared_tensor(value) for key, value in loaded.items()}, layout, max_bytes)
        keys = list(layout.expected) if layout is not None else list(loaded)
        tensors, metadata = {key: loaded[key] for key in keys}, {}
    else:
        raise WeightFileError(f"{path}: unsupported weight file type {suffix!r}; use one of {WEIGHT_SUFFIXES}")
    return tensors, metadata


def _check_layout(path: Path, shapes: dict[str, tuple[int, ...]], layout: Layout) -> None:
    """Strict key and shape check; optional keys (the unused rest of a released VGG19) may be present."""
    missing = sorted(set(layout.expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(layout.expected) - set(layout.optional))
    allowed = {**layout.optional, **layout.expected}
    misshaped = [f"{key}: file {shapes[key]} vs network {allowed[key]}"
                 for key in sorted(set(shapes) & set(allowed)) if shapes[key] != allowed[key]]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:12]}{' ...' if len(unexpected) > 12 else ''}")
        if misshaped:
            parts.append(f"mis-shaped keys {misshaped}")
        raise WeightFileError(f"{path}: does not fit the {layout.what} ({'; '.join(parts)}). Is it the right file "
                              f"for this loader? The {layout.what} expects the layout of the reference AdaIN port")


def _as_float32(path: Path, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The working dtype; checked as float32, the precision the networks load: float64 values beyond its
    range become inf."""
    converted = {key: value.to(torch.float32) for key, value in tensors.items()}
    bad = [key for key, value in converted.items() if not torch.isfinite(value).all()]
    if bad:
        raise WeightFileError(f"{path}: tensors {bad} contain NaN or infinite values (in float32); the file is "
                              "corrupt")
    return converted


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
    tensors, metadata = read_tensors(path, Layout.of(model, what, optional))
    model.load_state_dict(_as_float32(path, tensors))
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


def _declared_keys(path: Path) -> list[str]:
    """A safetensors file's keys from its header alone (pickled files are the reference port's relu4_1
    decoders; the trainer writes skip decoders as safetensors)."""
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES or not path.is_file():
        return []
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return []  # read_tensors reports the broken file


def load_decoder(path: str | os.PathLike) -> LoadedModel[AdaINDecoder | SkipDecoder]:
    """A frozen decoder from ``decoder.pth`` or a safetensors file with the same keys; a file with skip
    convolutions (``skip.<level>.*``) is a skip decoder of those levels, which also takes them AdaIN'd, and of the
    residual blocks it declares (``block.<level>.*``)."""
    keys = _declared_keys(Path(path))
    skips, blocks = SkipDecoder.skips_of(keys), SkipDecoder.blocks_of(keys)
    if skips or blocks:
        return _load(SkipDecoder(skips, blocks), path, "AdaIN skip decoder")
    return _load(AdaINDecoder(), path, "AdaIN decoder")


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, object],
                     overwrite: bool = True) -> None:
    """Atomically write contiguous CPU tensors with string metadata (non-strings JSON-encoded); without
    ``overwrite`` an existing ``path`` raises FileExistsError (the name is claimed atomically)."""
    meta = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    meta.setdefault("format_version", FORMAT_VERSION)
    data = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    write = lambda tmp: save_file(data, tmp, metadata=meta)  # noqa: E731
    if overwrite:
        atomic_write(path, write)
    else:
        atomic_write_new([path], write)


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
