"""Make the registry icon (docs/icon.png) from the pack's own stylized picture (docs/stylized_example.png).

    python docs/make_icon.py

A square crop around the cat's face, rounded corners, 256x256 in a 256-colour palette (small enough to
keep in the repository): nothing but the pack's output goes in.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SOURCE, TARGET = HERE / "stylized_example.png", HERE / "icon.png"
SIZE, RADIUS = 256, 40


def make_icon() -> Image.Image:
    with Image.open(SOURCE) as picture:
        side = min(picture.size)
        left = (picture.width - side) // 2
        square = picture.convert("RGB").crop((left, 0, left + side, side)).resize((SIZE, SIZE), Image.LANCZOS)
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, SIZE - 1, SIZE - 1), RADIUS, fill=255)
    icon = square.convert("RGBA")
    icon.putalpha(mask)
    return icon.quantize(256, method=Image.Quantize.FASTOCTREE)


if __name__ == "__main__":
    make_icon().save(TARGET, optimize=True)
    print(f"wrote {TARGET}")
