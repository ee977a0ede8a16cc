"""Decoding a Pillow image of any mode to what it shows: RGB and alpha in 0..1.

``Image.convert("RGB")`` is wrong for some modes: 16- and 32-bit integer greys are clipped at 255
(a 16-bit PNG turns white) and a palette's transparency entry is dropped (an empty mask). Every
mode is scaled by its own range here, once, for every place the pack reads images.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# Full scale of the integer modes: 16-bit greys, and Pillow's 32-bit "I", which holds 16-bit PNGs and PGMs.
_SIXTEEN_BIT = 65535.0
_INTEGER_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Modes whose alpha Pillow keeps when converting to RGBA (palette transparency included).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def has_alpha(image: Image.Image) -> bool:
    """Transparency in a band or in the palette's (or a grey/RGB image's) transparency entry."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def rgb_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB float32 ``[H, W, 3]`` and alpha float32 ``[H, W]`` (None without transparency), both in 0..1."""
    mode = image.mode
    if mode in _INTEGER_GREY_MODES or mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        grey = grey if mode == "F" else grey / _SIXTEEN_BIT  # "F" images are taken as 0..1 already
        alpha = None
        if isinstance(image.info.get("transparency"), (int, float)):  # a tRNS grey level: those pixels are clear
            alpha = (np.asarray(image) != image.info["transparency"]).astype(np.float32)
        grey = np.clip(np.nan_to_num(grey, nan=0.0), 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), alpha
    if has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, None


def to_rgb8(image: Image.Image) -> Image.Image:
    """An 8-bit RGB Pillow image of what ``image`` shows (alpha dropped), for code that works in Pillow."""
    if image.mode in _INTEGER_GREY_MODES or image.mode == "F":
        rgb, _ = rgb_and_alpha(image)
        return Image.fromarray(np.round(rgb * 255.0).astype(np.uint8), "RGB")
    return (image.convert("RGBA") if has_alpha(image) else image).convert("RGB")
