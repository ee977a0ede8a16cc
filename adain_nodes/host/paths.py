"""Model and style-preset folders: ComfyUI's folder_paths inside the host, environment variables outside.

Folder ``adain`` holds encoder and decoder files (ComfyUI's ``models/adain``, ``ADAIN_MODELS_DIR``
outside, and the pack's own ``weights/``); folder ``adain_styles`` holds style presets.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import AdaINInputError
from ..file_walk import walk_files
from ..models.weights import WEIGHT_SUFFIXES

log = logging.getLogger(__name__)

PACK_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
# The default file names, in one place. The encoder: the released vgg_normalised.pth converted (``download``).
DEFAULT_ENCODER = "vgg19_normalised_relu4_1.safetensors"
# The pack's default decoder in weights/ (a skip decoder); the relu4_1 decoder beside it stays for the
# workflows that name it.
DEFAULT_DECODER = "adain_decoder_skip.safetensors"
RELU4_1_DECODER = "adain_decoder_relu4_1.safetensors"
MODELS_FOLDER = "adain"
STYLES_FOLDER = "adain_styles"
STYLE_SUFFIXES = (".safetensors",)
MODELS_ENV = "ADAIN_MODELS_DIR"
STYLES_ENV = "ADAIN_STYLES_DIR"

_EXTENSIONS = {MODELS_FOLDER: WEIGHT_SUFFIXES, STYLES_FOLDER: STYLE_SUFFIXES}


def _comfy_folder_paths():
    from . import in_comfyui

    if not in_comfyui():
        return None
    import folder_paths

    for name in (MODELS_FOLDER, STYLES_FOLDER):
        if name not in folder_paths.folder_names_and_paths:
            default = os.path.join(folder_paths.models_dir, name)
            folder_paths.folder_names_and_paths[name] = ([default], set(_EXTENSIONS[name]))
            _create(default)
    folder_paths.add_model_folder_path(MODELS_FOLDER, str(PACK_WEIGHTS))
    return folder_paths


def _create(folder: str) -> None:
    """Make a default folder on first start, so users see where their files go (ComfyUI makes only its own)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:  # a read-only install still works with the folders it has
        log.warning("could not create %s (%s); create it to add files there", folder, exc)


def register_folders() -> None:
    """Make the pack's folders known to ComfyUI (no-op outside it). Safe to call repeatedly."""
    _comfy_folder_paths()


def _env_dirs(variable: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(variable, "").split(os.pathsep) if p.strip()]


def folder_dirs(folder: str) -> list[Path]:
    """Search order of a folder; the first one is where new files are written."""
    fp = _comfy_folder_paths()
    if fp is not None:
        return [Path(p) for p in fp.get_folder_paths(folder)]
    if folder == MODELS_FOLDER:
        return _env_dirs(MODELS_ENV) + [PACK_WEIGHTS]
    if folder == STYLES_FOLDER:
        explicit = _env_dirs(STYLES_ENV)
        if explicit:
            return explicit
        models = _env_dirs(MODELS_ENV)
        if models:
            return [models[0] / "styles"]
        return [Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "adain_nodes" / "styles"]
    raise ValueError(f"unknown folder {folder!r}")


def list_files(folder: str) -> list[str]:
    """Relative names of the folder's files (subfolders included; links followed, as in ComfyUI)."""
    fp = _comfy_folder_paths()
    if fp is not None:
        return fp.get_filename_list(folder)
    names: set[str] = set()
    for base in folder_dirs(folder):
        if not base.is_dir():
            continue
        for path in walk_files(base):
            if path.name.lower().endswith(_EXTENSIONS[folder]) and not path.name.startswith("."):
                names.add(path.relative_to(base).as_posix())
    return sorted(names)


def check_relative_name(name: str, what: str) -> str:
    """Refuse names that would leave their folder: absolute paths, drive letters, ``..`` parts."""
    if not isinstance(name, str) or not name.strip():
        raise AdaINInputError(f"{what}: empty file name")
    if any(ord(ch) < 32 for ch in name):  # NUL would crash the file system calls; none are valid on Windows
        raise AdaINInputError(f"{what}: {name!r} contains a control character; use a plain file name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or any(p == ".." for p in posix.split("/")):
        raise AdaINInputError(f"{what}: {name!r} must be a name inside the folder, not a path that leaves it")
    return posix


def resolve_file(folder: str, name: str) -> Path:
    """Full path of ``name`` in ``folder``, or an error listing where it was looked for."""
    check_relative_name(name, folder)
    fp = _comfy_folder_paths()
    if fp is not None:
        found = fp.get_full_path(folder, name)
        if found:
            return Path(found)
    else:
        for base in folder_dirs(folder):
            candidate = base / name
            if candidate.is_file():
                return candidate
    where = ", ".join(str(d) for d in folder_dirs(folder))
    available = list_files(folder)
    raise AdaINInputError(f"{name!r} was not found in the {folder!r} folder ({where}). {_how_to_add(folder, fp)}"
                          + (f"; available: {available[:10]}" if available else ""))


def _how_to_add(folder: str, folder_paths) -> str:
    """How a missing file gets found: where to put it, inside ComfyUI or outside (environment, runner flag)."""
    if folder == STYLES_FOLDER:
        make = "Save the preset with AdaIN Save Style (run the workflow that saves it first)"
        if folder_paths is not None:
            return make + " or copy the .safetensors preset into ComfyUI's models/adain_styles"
        return (make + f", or point {STYLES_ENV} at the folder that has it (headless runner: "
                "python -m adain_nodes run ... --styles-dir FOLDER)")
    if folder_paths is not None:
        return "Put the file into ComfyUI's models/adain"
    return (f"Put the file there, or point {MODELS_ENV} at its folder (headless runner: python -m adain_nodes run "
            "... --models-dir FOLDER)")


def writable_path(folder: str, name: str) -> Path:
    """Where a new file ``name`` of ``folder`` is written (the folder's first directory)."""
    return folder_dirs(folder)[0] / check_relative_name(name, folder)
