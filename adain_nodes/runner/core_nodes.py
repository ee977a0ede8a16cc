"""ComfyUI's core LoadImage, SaveImage and PreviewImage, re-implemented for headless runs.

The semantics follow ComfyUI's ``nodes.py`` so a workflow behaves the same in both places:
LoadImage reads from the input folder (EXIF orientation applied, every frame of an animated
file of the first frame's size becomes one batch item) and yields IMAGE plus MASK = 1 - alpha
(a 64x64 zero mask without alpha); SaveImage writes ``{prefix}_{counter:05}_.png`` with the
API prompt and the extra PNG info (the editor workflow) as PNG text chunks.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from ..image_files import IMAGE_SUFFIXES
from ..models.weights import atomic_write

log = logging.getLogger(__name__)

DISPLAY_NAMES = {"LoadImage": "Load Image", "SaveImage": "Save Image", "PreviewImage": "Preview Image"}


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
        for frame in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda i: i * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)[None])
            if "A" in frame.getbands():
                alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha)[None])
            else:
                masks.append(torch.zeros((1, 64, 64), dtype=torch.float32))
    if len({tuple(m.shape) for m in masks}) > 1:  # mixed alpha/no-alpha frames: pad like ComfyUI cannot
        masks = [m if m.shape[-2:] == images[0].shape[1:3] else torch.zeros(images[0].shape[:3]) for m in masks]
    return torch.cat(images), torch.cat(masks)


def _save_counter(folder: Path, filename: str) -> int:
    """Next free counter for ``{filename}_{counter:05}_.png``, as ComfyUI's get_save_image_path."""
    pattern = re.compile(re.escape(filename) + r"_(\d+)_?\.")
    counters = [int(m.group(1)) for f in (os.listdir(folder) if folder.is_dir() else []) if (m := pattern.match(f))]
    return max(counters, default=0) + 1


def save_images(images: torch.Tensor, prefix: str, base: Path, kind: str, compress_level: int,
                prompt: dict | None, extra_pnginfo: dict | None) -> list[dict[str, Any]]:
    """Write a batch as numbered PNGs with the workflow in the PNG text chunks; return ComfyUI's ui records."""
    prefix = prefix.replace("%width%", str(images.shape[2])).replace("%height%", str(images.shape[1]))
    subfolder = os.path.dirname(os.path.normpath(prefix))
    filename = os.path.basename(os.path.normpath(prefix))
    folder = Path(os.path.abspath(base / subfolder))
    if not _inside(base, folder):
        raise ValueError(f"Saving image outside the output folder is not allowed: {prefix!r}")
    folder.mkdir(parents=True, exist_ok=True)
    counter = _save_counter(folder, filename)
    results = []
    for batch_number, image in enumerate(images):
        array = np.clip(255.0 * image.detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
        metadata = PngInfo()
        if prompt is not None:
            metadata.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            metadata.add_text(key, json.dumps(value))
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        png = Image.fromarray(array)
        # written to a temporary file and renamed: a crash or full disk never leaves a half-written PNG
        atomic_write(folder / name, lambda tmp: png.save(tmp, format="PNG", pnginfo=metadata,
                                                         compress_level=compress_level))
        results.append({"filename": name, "subfolder": subfolder, "type": kind, "path": str(folder / name)})
        counter += 1
    return results


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
            try:
                if folders.annotated_path(image).exists():
                    return True
            except ValueError:
                pass
            # ComfyUI's message, plus where the runner looked and how to point it elsewhere
            return (f"Invalid image file: {image} (not in the input folder {folders.input_dir.resolve()}; put it "
                    "there or run with --input-dir FOLDER)")

        def load_image(self, image):
            return load_image_file(folders.annotated_path(image))

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

    return {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage}
