"""Record how ComfyUI's own LoadImage decodes the test images, for ``tests/test_host_decode.py``.

Run with ComfyUI's Python (not the pack's), from the repository root:

    /opt/comfy/venv/bin/python tests/host_decode/record.py /opt/comfy/ComfyUI

It (re)writes the small synthetic images of ``tests/host_decode/images/`` (every decode path of
ComfyUI 0.33: 8-bit RGB/RGBA/palette, greyscale, 16-bit, CMYK and YUV JPEG/WebP, EXIF rotation,
widths that are not a multiple of 32, animated GIF), then decodes them and the example inputs with
``nodes.LoadImage`` and stores only checksums of the results in ``decodes.json``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
IMAGES = HERE / "images"
RECORD = HERE / "decodes.json"
EXAMPLE_INPUTS = REPO / "examples" / "input"
IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".webp", ".gif")


def fingerprint(image: np.ndarray, mask: np.ndarray) -> dict:
    """Shapes and SHA-256 of IMAGE and MASK quantised to 16 bits (robust to float rounding, exact at 8 bits)."""
    def digest(array: np.ndarray) -> str:
        return hashlib.sha256(np.round(np.clip(array, 0, 1) * 65535).astype("<u2").tobytes()).hexdigest()

    return {"image_shape": list(image.shape), "mask_shape": list(mask.shape),
            "image_sha256": digest(image), "mask_sha256": digest(mask), "image_mean": round(float(image.mean()), 6)}


def _pattern(width: int, height: int, channels: int = 3) -> np.ndarray:
    """Smooth gradients plus a fine checker: chroma subsampling and colour conversion both show in it."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [xx / max(width - 1, 1), yy / max(height - 1, 1), ((xx + yy) % 4 < 2) * 0.6 + 0.2,
              0.5 + 0.5 * np.sin(xx / 3.0)]
    return np.stack(planes[:channels], axis=-1)


def make_images(folder: Path = IMAGES) -> list[Path]:
    """The synthetic test images (deterministic content; lossy ones are committed as written)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray((_pattern(45, 30) * 255).astype(np.uint8))
    files = {
        "rgb_w45.png": lambda p: rgb.save(p),
        "rgba_w45.png": lambda p: Image.fromarray((_pattern(45, 30, 4) * 255).astype(np.uint8), "RGBA").save(p),
        "grey_w45.png": lambda p: rgb.convert("L").save(p),
        "grey16_w45.png": lambda p: Image.fromarray((_pattern(45, 30)[..., 0] * 65535).astype(np.uint16)).save(p),
        "rgb16_w64.png": lambda p: _save_rgb16(p, (_pattern(64, 20) * 65535).astype(">u2")),
        "palette_transparent.png": lambda p: rgb.quantize(16).save(p, transparency=3),
        "yuv_w45.jpg": lambda p: rgb.save(p, quality=90),
        "exif_rotated.jpg": lambda p: rgb.save(p, quality=90, exif=_orientation(rgb, 6)),
        "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p, quality=90),
        "lossy_w45.webp": lambda p: rgb.save(p, quality=80),
        "animated.gif": lambda p: rgb.save(p, save_all=True, duration=100, loop=0,
                                           append_images=[rgb.rotate(180), rgb.transpose(Image.FLIP_LEFT_RIGHT)]),
    }
    for name, write in files.items():
        write(folder / name)
    return [folder / name for name in files]


def _orientation(image: Image.Image, value: int) -> Image.Exif:
    exif = image.getexif()
    exif[0x0112] = value
    return exif


def _save_rgb16(path: Path, array: np.ndarray) -> None:
    """16-bit RGB PNG (Pillow writes no such mode, so the chunks are written directly)."""
    import struct
    import zlib

    height, width, _ = array.shape
    raw = b"".join(b"\0" + row.tobytes() for row in array)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
                     + chunk(b"IEND", b""))


def record(comfy_root: Path) -> dict:
    """Decode every test image with ComfyUI's LoadImage; return {relative path: fingerprint}."""
    sys.path.insert(0, str(comfy_root))
    from comfy.cli_args import args

    args.cpu = True  # as the harness starts ComfyUI; LoadImage's dtype and device follow it
    import folder_paths
    import nodes

    results = {}
    for folder in (EXAMPLE_INPUTS, IMAGES):
        folder_paths.set_input_directory(str(folder))
        for path in sorted(p for p in folder.iterdir() if p.suffix in IMAGE_FILE_SUFFIXES):
            image, mask = nodes.LoadImage().load_image(path.name)
            results[path.relative_to(REPO).as_posix()] = fingerprint(image.numpy(), mask.numpy())
    return results


def main() -> None:
    make_images()
    comfy_root = Path(sys.argv[1])
    version = (comfy_root / "comfyui_version.py").read_text().split('"')[1]
    import av

    decodes = record(comfy_root)
    lines = ",\n".join(f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in decodes.items())
    header = json.dumps({"comfyui": version, "pyav": av.__version__})[:-1]
    RECORD.write_text(header + ', "decodes": {\n' + lines + "\n}}\n")  # one line per image: readable diffs
    print(f"recorded {len(decodes)} decodes of ComfyUI {version} (PyAV {av.__version__}) in {RECORD}")


if __name__ == "__main__":
    main()
