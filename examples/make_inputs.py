"""Regenerate the example input images in ``examples/input/`` (deterministic).

Style images are painted procedurally here, so the project owns them (CC0). Content photos are
scikit-image's bundled sample data (chelsea and coffee: CC0; astronaut: public-domain NASA
photo), resized and re-encoded; they are only regenerated when scikit-image is installed
(``pip install scikit-image``), otherwise the committed files are kept.

    python examples/make_inputs.py
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent / "input"
sys.path.insert(0, str(OUT.parents[1]))

from adain_nodes.runner.latent_nodes import save_latent_file  # noqa: E402
STYLE_SIZE = 384
JPEG = {"quality": 90, "optimize": True}
MASK_PHOTO_COLORS = 32


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def brushstrokes(size: int = STYLE_SIZE, seed: int = 1) -> Image.Image:
    """Thick curved strokes in warm and cool complementary colours, like an expressionist canvas."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), _hsv(0.58, 0.5, 0.35))
    draw = ImageDraw.Draw(img)
    for i in range(900):
        x, y = rng.uniform(0, size, 2)
        angle = math.sin(x / 40.0) + math.cos(y / 55.0) * 1.5  # a flow field gives the strokes a swirl
        length = rng.uniform(10, 34)
        hue = (0.08 if rng.random() < 0.55 else 0.6) + rng.normal(0, 0.04)
        colour = _hsv(hue, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))
        points = [(x + t * length * math.cos(angle + t * 0.6), y + t * length * math.sin(angle + t * 0.6))
                  for t in np.linspace(0, 1, 6)]
        draw.line(points, fill=colour, width=int(rng.integers(3, 9)), joint="curve")
    return img.filter(ImageFilter.SMOOTH)


def mosaic(size: int = STYLE_SIZE, seed: int = 2) -> Image.Image:
    """Voronoi tiles of saturated colours with dark grout, like a Byzantine mosaic."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (160, 2))
    hues = rng.choice([0.0, 0.13, 0.55, 0.62, 0.33], size=len(centres)) + rng.normal(0, 0.02, len(centres))
    colours = np.array([_hsv(h, rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95)) for h in hues], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2
    part = np.partition(d, 1, axis=-1)
    nearest = d.argmin(axis=-1)
    edge = np.sqrt(part[..., 1]) - np.sqrt(part[..., 0]) < 2.5
    image = colours[nearest] * (0.85 + 0.15 * rng.random((size, size, 1)))
    image[edge] = (30, 24, 20)
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


def waves(size: int = STYLE_SIZE, seed: int = 3) -> Image.Image:
    """Layered blue and cream waves with foam lines, a nod to woodblock prints."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    phase = rng.uniform(0, 2 * np.pi, 4)
    field = (np.sin(12 * yy + 3 * np.sin(6 * xx + phase[0]) + phase[1])
             + 0.5 * np.sin(25 * (xx + yy) + phase[2]) + 0.3 * np.sin(40 * yy * xx + phase[3]))
    bands = np.floor((field + 2) * 2.5) % 5
    palette = np.array([(18, 45, 94), (40, 90, 150), (95, 150, 190), (230, 222, 196), (28, 66, 120)], np.float32)
    image = palette[bands.astype(int)]
    foam = np.abs(np.sin(field * 9)) > 0.97
    image[foam] = (245, 240, 225)
    return Image.fromarray(image.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


def dots(size: int = STYLE_SIZE, seed: int = 4) -> Image.Image:
    """Pointillist dots of bright colours on a dark ground."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (20, 18, 30))
    draw = ImageDraw.Draw(img)
    for _ in range(2200):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(2, 7)
        hue = 0.12 + 0.25 * math.sin(x / 60.0) + 0.2 * math.cos(y / 45.0) + rng.normal(0, 0.05)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=_hsv(hue, rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0)))
    return img


def ellipse_mask(width: int, height: int, centre: tuple[float, float], radii: tuple[float, float],
                 softness: float = 0.15) -> np.ndarray:
    """1 inside a soft-edged ellipse (relative coordinates), 0 outside."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.sqrt(((xx / width - centre[0]) / radii[0]) ** 2 + ((yy / height - centre[1]) / radii[1]) ** 2)
    return np.clip((1 + softness - r) / (2 * softness), 0, 1)


def save_mask(mask: np.ndarray, photo: Image.Image, path: Path) -> None:
    """As ComfyUI's mask editor saves masks: the photo with the masked area transparent (LoadImage's MASK
    output is 1 - alpha), so Load Image's preview shows the photo with the mask cut out. The photo is reduced
    to MASK_PHOTO_COLORS colours to keep the file small; only the alpha channel is used."""
    rgba = np.zeros(mask.shape + (4,), np.uint8)
    reduced = photo.convert("RGB").quantize(MASK_PHOTO_COLORS, dither=Image.Dither.NONE)
    rgba[..., :3] = np.asarray(reduced.convert("RGB"))
    rgba[..., 3] = np.round(255 * (1 - mask)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path, optimize=True)


def masks() -> None:
    """Spatial control masks for chelsea.jpg: the cat and the rest."""
    with Image.open(OUT / "chelsea.jpg") as photo:
        photo.load()
    cat = ellipse_mask(photo.width, photo.height, centre=(0.44, 0.58), radii=(0.36, 0.55))
    save_mask(cat, photo, OUT / "chelsea_mask_cat.png")
    save_mask(1 - cat, photo, OUT / "chelsea_mask_background.png")


def _resize(img: Image.Image, long_side: int) -> Image.Image:
    scale = long_side / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def photos() -> None:
    try:
        from skimage import data
    except ImportError:
        print("scikit-image is not installed: keeping the committed content photos")
        return
    chelsea = _resize(Image.fromarray(data.chelsea()), 448)
    chelsea.save(OUT / "chelsea.jpg", **JPEG)
    _resize(Image.fromarray(data.coffee()), 448).save(OUT / "coffee.jpg", **JPEG)
    _resize(Image.fromarray(data.astronaut()), 384).save(OUT / "astronaut.jpg", **JPEG)
    # A short "video": a slow pan and zoom over the coffee photo, 8 frames of 256x192.
    coffee = Image.fromarray(data.coffee())
    frames = []
    for i in range(8):
        t = i / 7
        w, h = 480 - 80 * t, 360 - 60 * t
        x, y = 20 + 80 * t, 20 + 20 * t
        frames.append(coffee.crop((round(x), round(y), round(x + w), round(y + h))).resize(
            (256, 192), Image.Resampling.LANCZOS))
    frames[0].save(OUT / "coffee_frames.webp", save_all=True, append_images=frames[1:], duration=125, loop=0,
                   quality=80, method=6)


CLIP = {"name": "chelsea_pan.mp4", "frames": 16, "fps": 12, "size": (320, 240), "step": 3, "audio_rate": 24000}


def video_clip(photo: Path, out: Path) -> None:
    """A short clip the project owns: a camera panning 3 px per frame (not a multiple of the networks' 8-px grid,
    so per-frame stylization would shimmer) over one of the CC0 photos, with a quiet tone as its audio track,
    written with PyAV (H.264 + AAC in MP4) like ComfyUI's Save Video."""
    import av

    width, height = CLIP["size"]
    with Image.open(photo) as img:
        picture = np.asarray(img.convert("RGB"))
    top = (picture.shape[0] - height) // 2
    rate = CLIP["audio_rate"]
    seconds = CLIP["frames"] / CLIP["fps"]
    t = np.arange(round(rate * seconds)) / rate
    tone = (0.1 * np.sin(2 * np.pi * 440.0 * t) * np.minimum(1.0, 4.0 * t)).astype(np.float32)[None]
    out.unlink(missing_ok=True)
    with av.open(str(out), mode="w", format="mp4") as container:
        stream = container.add_stream("h264", rate=CLIP["fps"])
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16"}
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(CLIP["frames"]):
            x = i * CLIP["step"]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[top:top + height, x:x + width]),
                                               format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        sound = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        sound.sample_rate, sound.pts = rate, 0
        container.mux(audio.encode(sound))
        container.mux(audio.encode(None))


# Stand-in for a VAE: luminance, two colour differences and fine texture, at about an SD latent's scale.
LATENT_MIX = np.array([[1.6, 1.9, 0.7], [2.2, -1.1, -1.1], [0.0, 1.5, -1.5], [0.0, 0.0, 0.0]], np.float32)
LATENT_OFFSET = np.array([-1.8, 0.1, 0.3, 0.0], np.float32)


def stand_in_latent(image: Path, latent: Path) -> None:
    """A 4-channel latent-like tensor of ``image`` at 1/8 of its size, for example workflows without a VAE
    (the project has none): its channels keep the picture's layout and differ in mean and spread, as
    the channels of a real SD latent do. Real workflows get latents from VAE Encode."""
    with Image.open(image) as img:
        rgb = img.convert("RGB")
        small = np.asarray(rgb.resize((rgb.width // 8, rgb.height // 8), Image.Resampling.BOX), np.float32) / 255.0
    channels = np.einsum("cj,hwj->chw", LATENT_MIX, small) + LATENT_OFFSET[:, None, None]
    luma = Image.fromarray(small.mean(axis=2))  # the detail lost at half this size: a band of the Laplacian pyramid
    coarse = luma.resize((luma.width // 2, luma.height // 2), Image.Resampling.BOX).resize(luma.size, Image.BILINEAR)
    channels[3] = 4.0 * (np.asarray(luma, np.float32) - np.asarray(coarse, np.float32))
    latent.unlink(missing_ok=True)  # regenerated, never appended to
    save_latent_file(torch.from_numpy(np.ascontiguousarray(channels))[None], [latent], {})


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, paint in (("style_brushstrokes", brushstrokes), ("style_mosaic", mosaic), ("style_waves", waves),
                        ("style_dots", dots)):
        paint().save(OUT / f"{name}.jpg", **JPEG)
    photos()
    masks()
    stand_in_latent(OUT / "chelsea.jpg", OUT / "chelsea.latent")
    stand_in_latent(OUT / "style_waves.jpg", OUT / "style_waves.latent")
    video_clip(OUT / "chelsea.jpg", OUT / CLIP["name"])
    total = sum(f.stat().st_size for f in OUT.iterdir() if f.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
