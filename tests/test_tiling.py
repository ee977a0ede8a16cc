"""Tiled processing: same features and (visually) the same picture as whole-image processing."""
from __future__ import annotations

import math

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.errors import AdaINInputError
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.tiling import NO_TILING, Tiling, tile_count
from conftest import random_image

RUNTIME = StandaloneRuntime(torch.device("cpu"))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def nchw(image):
    return image.permute(0, 3, 1, 2)


def test_tiled_encoding_equals_whole_image(encoder):
    image = nchw(random_image(1, 200, 136))
    whole = pipeline.encode(encoder, image, RUNTIME, NO_TILING)
    tiled = pipeline.encode(encoder, image, RUNTIME, Tiling(size=64, overlap=64))
    assert tile_count(200, 136, Tiling(size=64, overlap=64)) > 4
    assert (whole.features - tiled.features).abs().max() <= 1e-4 * whole.features.abs().max()


def test_tiled_stylization_is_seamless(encoder, decoder):
    content, style = nchw(random_image(2, 256, 192, seed=1)), nchw(random_image(1, 96, 96, seed=2))
    whole = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=NO_TILING)
    tiled = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=Tiling(size=96, overlap=64))
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) >= 40


def test_small_overlap_is_worse_but_still_finite(encoder, decoder):
    content, style = nchw(random_image(1, 192, 192, seed=3)), nchw(random_image(1, 64, 64, seed=4))
    whole = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=NO_TILING)
    rough = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=Tiling(size=64, overlap=0))
    good = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=Tiling(size=64, overlap=64))
    assert torch.isfinite(rough).all()
    assert psnr(good, whole) > psnr(rough, whole)  # overlap is what removes the seams


def test_statistics_come_from_the_whole_image(encoder):
    """A tiled style image gives the statistics of the whole image, not of one tile."""
    style = nchw(random_image(1, 160, 160, seed=5))
    whole = pipeline.style_statistics(encoder, style, RUNTIME, tiling=NO_TILING)
    tiled = pipeline.style_statistics(encoder, style, RUNTIME, tiling=Tiling(size=64, overlap=64))
    assert torch.allclose(whole.mean, tiled.mean, atol=1e-4) and torch.allclose(whole.std, tiled.std, atol=1e-4)


@pytest.mark.parametrize("size,overlap", [(32, 8), (128, 2000), (128, -8)])
def test_invalid_tiling_is_refused(size, overlap):
    with pytest.raises(AdaINInputError, match="tile_"):
        Tiling(size, overlap)


def test_nodes_accept_tile_options(encoder, decoder):
    from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
    image = random_image(1, 150, 90)
    out = N["AdaINStyleTransfer"]().transfer(encoder, decoder, image, random_image(1, 64, 64), 1.0, "off", 64, 32)[0]
    assert out.shape == image.shape
