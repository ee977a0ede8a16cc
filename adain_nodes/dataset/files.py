"""Image files of a dataset: listing, decoding in loader workers, encoding the outputs."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..core.pil_image import to_rgb8
from ..file_walk import walk_files

# Output format by suffix; JPEG and WebP at high quality, so the style's texture survives compression.
SAVE_OPTIONS = {".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95}),
                ".png": ("PNG", {"compress_level": 4}), ".webp": ("WEBP", {"quality": 95})}
# The images a dataset run stylizes: those whose format it can write back under the same name.
DATASET_SUFFIXES = tuple(SAVE_OPTIONS)


def list_images(folder: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``folder`` (nested, sorted; hidden entries skipped).

    Only names are looked at: reading 1.28 M headers would take longer than it saves, and a file that
    fails to decode is recorded as failed when it is loaded.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    found = []
    for path in walk_files(folder):  # each real folder once: a link loop cannot make the listing endless
        relative = path.relative_to(folder)
        if not any(part.startswith(".") for part in relative.parts) and path.name.lower().endswith(DATASET_SUFFIXES):
            found.append(relative.as_posix())
    return found


def load_rgb(path: Path, short_side: int) -> Tensor:
    """RGB ``[3, H, W]`` uint8, the short side resized to ``short_side`` (0 keeps the size).

    EXIF orientation is not applied, like torchvision's ImageFolder: the stylized image lines up
    with the original as training code loads it.
    """
    with Image.open(path) as img:
        img = to_rgb8(img)  # 16-bit, palette and CMYK files decode to what they show
    if short_side:
        # imported here: torchvision's package import pulls in torch._dynamo (about 2.5 s per process),
        # which every CLI start and dataset worker would pay even when nothing is resized
        from torchvision.transforms.functional import resize

        img = resize(img, short_side, antialias=True)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def encode_image(image: Tensor, suffix: str) -> bytes:
    """RGB ``[3, H, W]`` in 0..1 as the bytes of an image file of the format ``suffix`` names."""
    array = image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    fmt, options = SAVE_OPTIONS[suffix.lower()]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()
