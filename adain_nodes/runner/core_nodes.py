"""ComfyUI's core LoadImage, SaveImage, PreviewImage, PreviewAny, PrimitiveString and ImageScaleBy, re-implemented
for headless runs.

The semantics follow ComfyUI's ``nodes.py`` so a workflow behaves the same in both places:
LoadImage reads from the input folder, through PyAV as ComfyUI 0.33 does when it is installed
(``pyav_decode``), else with Pillow (EXIF orientation applied, every frame of an animated file of
the first frame's size becomes one batch item), and yields IMAGE plus MASK = 1 - alpha (a 64x64
zero mask without alpha); SaveImage writes ``{prefix}_{counter:05}_.png`` with the
API prompt and the extra PNG info (the editor workflow) as PNG text chunks; PreviewAny ("Preview as
Text") shows any value as text (printed by the CLI); PrimitiveString ("Text") outputs its text widget, the
usual way to link one value into another node's widget input; ImageScaleBy ("Upscale Image By") resizes by a
factor as ``comfy.utils.common_upscale`` does (lanczos through Pillow in 8 bits, the rest with torch's
``interpolate``), e.g. to stylize a small picture at twice its size. The core video nodes are in ``video_nodes``.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from ..atomic_files import Writer, atomic_write_new
from ..core.pil_image import rgb_and_alpha
from ..file_walk import is_regular_file
from ..image_files import IMAGE_SUFFIXES, check_decoded_size
from .pyav_decode import load_image_pyav

log = logging.getLogger(__name__)

DISPLAY_NAMES = {"LoadImage": "Load Image", "SaveImage": "Save Image", "PreviewImage": "Preview Image",
                 "PreviewAny": "Preview as Text", "LoadLatent": "Load Latent", "SaveLatent": "Save Latent",
                 "PrimitiveString": "Text", "ImageScaleBy": "Upscale Image By",
                 "LoadVideo": "Load Video", "GetVideoComponents": "Get Video Components", "CreateVideo": "Create Video",
                 "SaveVideo": "Save Video"}


SCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")  # ComfyUI's ImageScaleBy, in its order


def scale_image(image: torch.Tensor, scale_by: float, method: str) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` resized to round(size x ``scale_by``) as ComfyUI's ImageScaleBy does."""
    height, width = round(image.shape[1] * scale_by), round(image.shape[2] * scale_by)
    if height < 1 or width < 1:
        raise ValueError(f"scale_by {scale_by:g} turns a {image.shape[2]}x{image.shape[1]} image into {width}x{height} "
                         "pixels: use a larger factor")
    if method == "lanczos":
        frames = [Image.fromarray(np.clip(255.0 * frame.cpu().numpy(), 0, 255).astype(np.uint8)).resize(
            (width, height), resample=Image.Resampling.LANCZOS) for frame in image]
        return torch.stack([torch.from_numpy(np.array(f).astype(np.float32) / 255.0) for f in frames]).to(image)
    return F.interpolate(image.movedim(-1, 1), size=(height, width), mode=method).movedim(1, -1)


@dataclass
class Folders:
    """Where a headless run reads images and writes results (ComfyUI's input/output/temp dirs)."""

    input_dir: Path
    output_dir: Path
    temp_dir: Path | None = None
    written: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.input_dir = Path(self.input_dir)
        self.output_dir = Path(self.output_dir)
        self.temp_dir = Path(self.temp_dir) if self.temp_dir else self.output_dir / "temp"

    def input_files(self) -> list[str]:
        if not self.input_dir.is_dir():
            return []
        return sorted(f.name for f in self.input_dir.iterdir()
                      if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)

    def annotated_path(self, name: str) -> Path:
        """``name``, ``name [input]``, ``name [output]`` or ``name [temp]``, kept inside its folder."""
        base = self.input_dir
        for tag, folder in (("[output]", self.output_dir), ("[input]", self.input_dir), ("[temp]", self.temp_dir)):
            if name.endswith(tag):
                name, base = name[: -len(tag)].rstrip(), folder
                break
        path = Path(os.path.abspath(base / name))
        if not _inside(base, path):
            raise ValueError(f"Invalid file path: {name!r}")
        return path

    def input_file(self, name: str) -> Path:
        """The regular file an input name stands for (as ``annotated_path``); ValueError saying why there is
        none: a folder, named pipe or device is no input (a reader would fail on it, or block forever)."""
        path = self.annotated_path(name)
        if not path.exists():
            raise ValueError(f"not in the input folder {self.input_dir.resolve()}; put it there or run with "
                             "--input-dir FOLDER")
        if not is_regular_file(path):
            kind = "a folder" if path.is_dir() else "not a regular file (a named pipe, socket or device)"
            raise ValueError(f"{path} is {kind}; name an image file")
        return path

    def input_problem(self, kind: str, name: str) -> str | None:
        """ComfyUI's "Invalid <kind> file" message for ``name``, plus why and how to point the runner elsewhere;
        None when it names a readable input."""
        try:
            self.input_file(name)
            return None
        except ValueError as exc:
            return f"Invalid {kind} file: {name} ({exc})"

    def checked_input(self, kind: str, name: str) -> Path:
        """The input file ``name`` stands for, or ValueError with ``input_problem``'s message."""
        problem = self.input_problem(kind, name)
        if problem:
            raise ValueError(problem)
        return self.input_file(name)


def _inside(base: Path, path: Path) -> bool:
    """Lexically inside ``base``, as ComfyUI checks: a name cannot climb out with '..' or an absolute path,
    while files and folders the user linked into the folder keep working (resolving links would refuse them)."""
    base, path = os.path.abspath(base), os.path.abspath(path)
    try:
        return os.path.commonpath([base, path]) == base
    except ValueError:  # different drives on Windows
        return False


def load_image_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE ``[B, H, W, 3]`` and MASK ``[B, H, W]`` (or ``[B, 64, 64]`` zeros) as ComfyUI's LoadImage."""
    images, masks = [], []
    with Image.open(path) as img:
        size = None
        for count, frame in enumerate(ImageSequence.Iterator(img), start=1):
            check_decoded_size(path, count, count * img.width * img.height)
            frame = ImageOps.exif_transpose(frame)
            rgb, alpha = rgb_and_alpha(frame)
            if size is None:
                size = rgb.shape[:2]
            if rgb.shape[:2] != size:
                continue
            images.append(torch.from_numpy(rgb)[None])
            if alpha is not None:
                masks.append(1.0 - torch.from_numpy(alpha)[None])
            else:
                masks.append(torch.zeros((1, 64, 64), dtype=torch.float32))
    if len({tuple(m.shape) for m in masks}) > 1:  # mixed alpha/no-alpha frames: pad like ComfyUI cannot
        masks = [m if m.shape[-2:] == images[0].shape[1:3] else torch.zeros(images[0].shape[:3]) for m in masks]
    return torch.cat(images), torch.cat(masks)


def decode_input_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE and MASK of an input file along ComfyUI 0.33's path: PyAV first (its pixels), Pillow for
    what PyAV yields no frame for (animated WebP) or when PyAV is not installed."""
    decoded = load_image_pyav(path)
    return decoded if decoded is not None else load_image_file(path)


def _save_counter(folder: Path, filename: str) -> int:
    """First counter worth trying for ``{filename}_{counter:05}_.png``, as ComfyUI's get_save_image_path; the
    name is only claimed when the file is written (another writer may take it first)."""
    pattern = re.compile(re.escape(filename) + r"_(\d+)_?\.")
    counters = [int(m.group(1)) for f in (os.listdir(folder) if folder.is_dir() else []) if (m := pattern.match(f))]
    return max(counters, default=0) + 1


def prefix_check(base: Path, prefix: str | None) -> bool | str:
    """VALIDATE_INPUTS' answer for a ``filename_prefix``: True, or why it leaves ``base``. A linked prefix is None
    before the run (as ComfyUI passes links): saving checks it when it arrives."""
    if prefix is None:
        return True
    try:
        output_location(base, prefix)
    except ValueError as exc:
        return str(exc)
    return True


def output_location(base: Path, prefix: str) -> tuple[Path, str, str]:
    """Folder, subfolder and file name a ``filename_prefix`` stands for; ValueError if it leaves ``base``."""
    if any(ord(ch) < 32 for ch in prefix):
        raise ValueError(f"filename_prefix {prefix!r} contains a control character; use a plain name")
    subfolder = os.path.dirname(os.path.normpath(prefix))
    filename = os.path.basename(os.path.normpath(prefix))
    folder = Path(os.path.abspath(base / subfolder))
    if not _inside(base, folder):
        raise ValueError(f"Saving image outside the output folder is not allowed: {prefix!r}")
    return folder, subfolder, filename


def write_new_file(folder: Path, filename: str, data: bytes | Writer) -> Path:
    """``data`` (bytes, or a ``write(path)`` that streams them) as ``folder/filename``, or ``stem_1.ext``,
    ``stem_2.ext``, ... where taken: the name is claimed atomically, so an existing file (or one another run
    writes at the same time) is never overwritten, and a write that fails leaves nothing."""
    stem, suffix = os.path.splitext(filename)
    names = itertools.chain([folder / filename], (folder / f"{stem}_{k}{suffix}" for k in itertools.count(1)))
    write = data if callable(data) else lambda tmp: Path(tmp).write_bytes(data)
    return atomic_write_new(names, write)


def numbered_names(folder: Path, stem: str, first: int, tried: list[int], suffix: str = ".png") -> Iterator[Path]:
    """``{stem}_{counter:05}_{suffix}`` from counter ``first`` on, noting each counter offered in ``tried``."""
    for counter in itertools.count(first):
        tried.append(counter)
        yield folder / f"{stem}_{counter:05}_{suffix}"


def save_target(prefix: str, base: Path) -> tuple[Path, str, str, int]:
    """Folder (created), subfolder, file name and first counter worth trying for a ``filename_prefix``."""
    folder, subfolder, filename = output_location(base, prefix)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, subfolder, filename, _save_counter(folder, filename)


def save_images(images: torch.Tensor, prefix: str, base: Path, kind: str, compress_level: int,
                prompt: dict | None, extra_pnginfo: dict | None) -> list[dict[str, Any]]:
    """Write a batch as numbered PNGs with the workflow in the PNG text chunks; return ComfyUI's ui records."""
    prefix = prefix.replace("%width%", str(images.shape[2])).replace("%height%", str(images.shape[1]))
    folder, subfolder, filename, counter = save_target(prefix, base)
    results = []
    for batch_number, image in enumerate(images):
        array = np.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
        metadata = PngInfo()
        if prompt is not None:
            metadata.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            metadata.add_text(key, json.dumps(value))
        stem = filename.replace('%batch_num%', str(batch_number))
        png = Image.fromarray(array)
        # written whole under a temporary name, then published under the first free counter, claimed
        # atomically: a crash never leaves half a PNG, and two runs saving at once never share a name
        tried: list[int] = []
        path = atomic_write_new(numbered_names(folder, stem, counter, tried),
                                lambda tmp: png.save(tmp, format="PNG", pnginfo=metadata,
                                                     compress_level=compress_level))
        results.append({"filename": path.name, "subfolder": subfolder, "type": kind, "path": str(path)})
        counter = tried[-1] + 1
    return results


def preview_text(source: Any) -> str:
    """A value as ComfyUI's PreviewAny shows it: strings as they are, numbers with str, the rest as JSON."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, (int, float, bool)):
        return str(source)
    try:
        return json.dumps(source, indent=4, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(source)


def make_core_nodes(folders: Folders) -> dict[str, type]:
    """Node classes bound to ``folders`` (ComfyUI binds them to its global folder_paths instead)."""

    class LoadImage:
        CATEGORY = "image"
        RETURN_TYPES = ("IMAGE", "MASK")
        FUNCTION = "load_image"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": (folders.input_files(), {"image_upload": True})}}

        @classmethod
        def VALIDATE_INPUTS(cls, image):
            """A linked name is None here (as ComfyUI passes links): load_image checks it when it arrives."""
            return True if image is None else folders.input_problem("image", image) or True

        def load_image(self, image):
            path = folders.checked_input("image", image)
            return decode_input_image(path)

    class SaveImage:
        CATEGORY = "image"
        RETURN_TYPES = ("IMAGE",)
        RETURN_NAMES = ("images",)
        FUNCTION = "save_images"
        OUTPUT_NODE = True
        KIND, COMPRESS_LEVEL = "output", 4

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

        def base(self) -> tuple[Path, str]:
            return folders.output_dir, ""

        @classmethod
        def VALIDATE_INPUTS(cls, filename_prefix=None):
            """Checked before the graph runs, not when the whole graph has run (ComfyUI finds it only then). A
            linked prefix is None here (as ComfyUI passes links; PreviewImage has none): saving checks it."""
            return prefix_check(folders.output_dir, filename_prefix)

        def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
            base, suffix = self.base()
            results = save_images(images, filename_prefix + suffix, base, self.KIND, self.COMPRESS_LEVEL,
                                  prompt, extra_pnginfo)
            folders.written.extend(results)
            return {"ui": {"images": results}, "result": (images,)}

    class PreviewImage(SaveImage):
        KIND, COMPRESS_LEVEL = "temp", 1

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE",)},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

        def base(self) -> tuple[Path, str]:
            return folders.temp_dir, "_temp_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))

        def save_images(self, images, prompt=None, extra_pnginfo=None):
            return super().save_images(images, "ComfyUI", prompt, extra_pnginfo)

    class PreviewAny:
        CATEGORY = "utilities"
        RETURN_TYPES = ("STRING",)
        FUNCTION = "main"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"source": ("*", {})}}

        def main(self, source=None):
            value = preview_text(source)
            return {"ui": {"text": (value,)}, "result": (value,)}

    class PrimitiveString:
        """ComfyUI's String primitive: a text widget as an output, for linking one value into other inputs."""

        CATEGORY = "utilities/primitive"
        RETURN_TYPES = ("STRING",)
        FUNCTION = "execute"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("STRING", {})}}

        def execute(self, value):
            return (value,)

    class ImageScaleBy:
        CATEGORY = "image/upscaling"
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "upscale"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": ("IMAGE",), "upscale_method": (list(SCALE_METHODS),),
                                 "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})}}

        def upscale(self, image, upscale_method, scale_by):
            return (scale_image(image, scale_by, upscale_method),)

    return {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage, "PreviewAny": PreviewAny,
            "PrimitiveString": PrimitiveString, "ImageScaleBy": ImageScaleBy}
