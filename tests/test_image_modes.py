"""Images decode to what they show, in every mode Pillow opens, checked against a decode done here in numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adain_nodes.core.pil_image import rgb_and_alpha, to_rgb8
from adain_nodes.runner.core_nodes import load_image_file

H, W = 6, 10
RNG = np.random.default_rng(0)
GREY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
GREY8 = RNG.integers(0, 256, (H, W), dtype=np.uint8)
RGBA8 = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
INDEX = RNG.integers(0, 8, (H, W), dtype=np.uint8)
CLEAR = 3  # the palette entry marked transparent


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.float32)[..., None], 3, axis=2)


def _palette(info: dict) -> Image.Image:
    image = Image.frombytes("P", (W, H), INDEX.tobytes())
    image.putpalette(PALETTE.tobytes())
    image.info.update(info)
    return image


def _cmyk() -> tuple[Image.Image, np.ndarray]:
    image = Image.frombytes("CMYK", (W, H), RGBA8.tobytes())
    c, m, y, k = (RGBA8[..., i].astype(np.int32) for i in range(4))

    def times(a, b):  # a * b / 255, rounded as 8-bit arithmetic does it
        p = a * b + 128
        return (p + (p >> 8)) >> 8

    rgb = np.stack([times(255 - c, 255 - k), times(255 - m, 255 - k), times(255 - y, 255 - k)], -1)
    return image, rgb / 255.0


PER_ENTRY_ALPHA = bytes((i * 37) % 256 for i in range(256))

# mode: (image, expected RGB in 0..1, expected alpha in 0..1 or None)
CASES = {
    "I;16": lambda: (Image.fromarray(GREY16), _grey(GREY16 / 65535), None),
    "I;16B": lambda: (Image.frombytes("I;16B", (W, H), GREY16.astype(">u2").tobytes()), _grey(GREY16 / 65535), None),
    "I": lambda: (Image.fromarray(GREY16.astype(np.int32)), _grey(GREY16 / 65535), None),
    "F": lambda: (Image.fromarray((GREY16 / 65535).astype(np.float32)), _grey(GREY16 / 65535), None),
    "L": lambda: (Image.fromarray(GREY8), _grey(GREY8 / 255), None),
    "1": lambda: (Image.fromarray(GREY8 > 127), _grey(GREY8 > 127), None),
    "LA": lambda: (Image.fromarray(RGBA8[..., [0, 3]], "LA"), _grey(RGBA8[..., 0] / 255), RGBA8[..., 3] / 255),
    "RGB": lambda: (Image.fromarray(RGBA8[..., :3]), RGBA8[..., :3] / 255, None),
    "RGBA": lambda: (Image.fromarray(RGBA8, "RGBA"), RGBA8[..., :3] / 255, RGBA8[..., 3] / 255),
    "CMYK": lambda: (*_cmyk(), None),
    "P": lambda: (_palette({}), PALETTE[INDEX] / 255, None),
    "P+transparency": lambda: (_palette({"transparency": CLEAR}), PALETTE[INDEX] / 255,
                               (INDEX != CLEAR).astype(np.float32)),
    "P+alpha entries": lambda: (_palette({"transparency": PER_ENTRY_ALPHA}), PALETTE[INDEX] / 255,
                                np.frombuffer(PER_ENTRY_ALPHA, np.uint8)[INDEX] / 255),
    "L+transparency": lambda: (_with_info(Image.fromarray(GREY8), {"transparency": int(GREY8[0, 0])}),
                               _grey(GREY8 / 255), (GREY8 != GREY8[0, 0]).astype(np.float32)),
    "I;16+transparency": lambda: (_with_info(Image.fromarray(GREY16), {"transparency": int(GREY16[1, 1])}),
                                  _grey(GREY16 / 65535), (GREY16 != GREY16[1, 1]).astype(np.float32)),
}


def _with_info(image: Image.Image, info: dict) -> Image.Image:
    image.info.update(info)
    return image


@pytest.mark.parametrize("case", list(CASES))
def test_every_mode_decodes_to_the_reference(case):
    image, rgb, alpha = CASES[case]()
    got_rgb, got_alpha = rgb_and_alpha(image)
    assert got_rgb.dtype == np.float32 and got_rgb.shape == (H, W, 3)
    np.testing.assert_allclose(got_rgb, rgb, atol=1e-6)
    if alpha is None:
        assert got_alpha is None
    else:
        np.testing.assert_allclose(got_alpha, alpha, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(to_rgb8(image)), np.round(rgb * 255).astype(np.uint8))


@pytest.mark.parametrize("case,suffix", [("I;16", ".png"), ("I;16B", ".tiff"), ("F", ".tiff"), ("CMYK", ".tiff"),
                                         ("P+transparency", ".png"), ("P+alpha entries", ".png"), ("LA", ".png"),
                                         ("L+transparency", ".png"), ("1", ".png"), ("I;16+transparency", ".png")])
def test_load_image_reads_saved_files_as_they_show(tmp_path, case, suffix):
    image, rgb, alpha = CASES[case]()
    path = tmp_path / f"image{suffix}"
    image.save(path, **({"transparency": image.info["transparency"]} if "transparency" in image.info else {}))
    loaded, mask = load_image_file(path)
    np.testing.assert_allclose(loaded[0].numpy(), rgb, atol=1e-6)
    expected_mask = torch.zeros(1, 64, 64) if alpha is None else 1.0 - torch.from_numpy(alpha.astype(np.float32))[None]
    np.testing.assert_allclose(mask.numpy(), expected_mask.numpy(), atol=1e-6)
