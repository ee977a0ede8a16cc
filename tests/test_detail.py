"""The content's detail layer (core.detail), its hook in the pipeline and nodes, and the edge sharpness measure."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adain_nodes import pipeline
from adain_nodes.core.color import luminance
from adain_nodes.core.detail import DETAIL_RADIUS, add_content_detail, box_mean, content_detail, guided_filter
from adain_nodes.errors import AdaINInputError
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from adain_nodes.tiling import Tiling
from conftest import random_image
from training.sharpness import edge_sharpness


def _photo(seed: int = 0, height: int = 48, width: int = 64) -> torch.Tensor:
    return random_image(1, height, width, seed=seed).permute(0, 3, 1, 2).contiguous()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def test_box_mean_counts_only_pixels_inside():
    x = torch.rand(1, 1, 5, 7, dtype=torch.float64)
    got = box_mean(x, 1)
    assert got[0, 0, 0, 0] == pytest.approx(float(x[0, 0, :2, :2].mean()))
    assert got[0, 0, 2, 3] == pytest.approx(float(x[0, 0, 1:4, 2:5].mean()))
    torch.testing.assert_close(box_mean(x, 50), x.mean().expand_as(x))  # a window larger than the image


def test_guided_filter_keeps_strong_edges_and_smooths_weak_texture():
    g = torch.Generator().manual_seed(0)
    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:] = 1.0
    texture = 0.02 * torch.randn(1, 1, 32, 32, generator=g)
    smooth = guided_filter(step + texture, step + texture, 2, 0.01)
    # the strong edge stays in the smooth layer: its detail is far below an unsharp mask's at the edge
    detail = (step + texture) - smooth
    unsharp = (step + texture) - box_mean(step + texture, 2)
    assert detail[..., 14:18].abs().max() < 0.25 * unsharp[..., 14:18].abs().max()
    # weak texture (variance far below eps) goes to the detail layer: away from the edge it is mostly texture
    flat = (slice(None), slice(None), slice(4, 28), slice(2, 10))
    assert float(detail[flat].std()) > 0.7 * float(texture[flat].std())
    # a large eps turns the filter into a plain box mean
    torch.testing.assert_close(guided_filter(step, step, 2, 1e9), box_mean(box_mean(step, 2), 2), atol=1e-5,
                               rtol=0)


def test_detail_layer_is_local_so_it_can_be_computed_in_tiles():
    """The layer of a crop equals the full image's away from the crop's border: tiles with an overlap of
    2 x the radius (or video frames) give the same pixels."""
    image = _photo(3, 64, 80)
    full = content_detail(image)
    margin = 2 * DETAIL_RADIUS
    crop = content_detail(image[..., 10:50, 20:70])
    torch.testing.assert_close(crop[..., margin:-margin, margin:-margin],
                               full[..., 10 + margin:50 - margin, 20 + margin:70 - margin], atol=1e-6, rtol=0)


def test_add_content_detail_changes_luminance_only():
    content, image = _photo(1), _photo(2) * 0.6 + 0.2  # inside 0..1 after adding: no clipping
    out = add_content_detail(image, content, 0.5)
    delta = out - image
    torch.testing.assert_close(delta[:, 0], delta[:, 1], atol=1e-6, rtol=0)  # same on R, G, B: chroma kept
    torch.testing.assert_close(delta[:, 1], delta[:, 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(luminance(out) - luminance(image), 0.5 * content_detail(content), atol=1e-5, rtol=0)
    assert float(delta.abs().max()) > 0.01
    assert add_content_detail(image, content, 0.0) is image
    flat = torch.full_like(content, 0.4)
    torch.testing.assert_close(add_content_detail(image, flat, 1.0), image)  # a flat content has no detail
    batch = torch.cat([image, image * 0.5])
    torch.testing.assert_close(add_content_detail(batch, content, 0.5)[1:],
                               add_content_detail(image * 0.5, content, 0.5))
    with pytest.raises(ValueError, match="size"):
        add_content_detail(image, content[..., :-1], 0.5)


def test_stylize_with_detail_is_the_decoded_image_plus_the_layer(encoder, decoder):
    content, style = _photo(4, 72, 96), _photo(5, 32, 32)
    runtime = StandaloneRuntime(torch.device("cpu"))
    plain = pipeline.stylize(encoder, decoder, content, style, runtime, 0.8)
    assert torch.equal(pipeline.stylize(encoder, decoder, content, style, runtime, 0.8, detail=0.0), plain)
    detailed = pipeline.stylize(encoder, decoder, content, style, runtime, 0.8, detail=0.3)
    torch.testing.assert_close(detailed, add_content_detail(plain, content, 0.3))
    tiled = pipeline.stylize(encoder, decoder, content, style, runtime, 0.8, tiling=Tiling(64, 8), detail=0.3)
    untiled_tiles = pipeline.stylize(encoder, decoder, content, style, runtime, 0.8, tiling=Tiling(64, 8))
    torch.testing.assert_close(tiled, add_content_detail(untiled_tiles, content, 0.3))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(AdaINInputError, match="content_detail"):
            pipeline.stylize(encoder, decoder, content, style, runtime, detail=bad)


def test_nodes_take_the_detail_option(encoder, decoder):
    content, style = random_image(2, 32, 40, seed=1), random_image(1, 32, 32, seed=2)
    transfer = N["AdaINStyleTransfer"]()
    plain = transfer.transfer(encoder, decoder, content, style, 1.0)[0]
    detailed = transfer.transfer(encoder, decoder, content, style, 1.0, content_detail=0.4)[0]
    expected = add_content_detail(plain.permute(0, 3, 1, 2), content.permute(0, 3, 1, 2), 0.4).permute(0, 2, 3, 1)
    torch.testing.assert_close(detailed, expected)
    features = N["AdaINEncode"]().encode(encoder, content)[0]
    decode = N["AdaINDecode"]()
    reconstruction = decode.decode(decoder, features)[0]
    torch.testing.assert_close(decode.decode(decoder, features, content_image=content)[0], reconstruction)
    sharper = decode.decode(decoder, features, content_image=content, content_detail=0.4)[0]
    torch.testing.assert_close(sharper, add_content_detail(reconstruction.permute(0, 3, 1, 2),
                                                           content.permute(0, 3, 1, 2), 0.4).permute(0, 2, 3, 1))
    with pytest.raises(AdaINInputError, match="content_image"):
        decode.decode(decoder, features, content_detail=0.4)
    with pytest.raises(AdaINInputError, match="decoded size"):
        decode.decode(decoder, features, content_image=content[:, :16], content_detail=0.4)
    assert "content_detail" in N["AdaINStyleTransfer"].INPUT_TYPES()["optional"]


def test_edge_sharpness_ranks_blurred_outputs_lower():
    content = _photo(6, 64, 64)
    assert float(edge_sharpness(content, content)) == pytest.approx(1.0)
    scores = [float(edge_sharpness(_gaussian_blur(content, sigma), content)) for sigma in (0.7, 1.5, 3.0)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0
    assert float(edge_sharpness(torch.full_like(content, 0.5), content)) == pytest.approx(0.0, abs=1e-9)
    soft = _gaussian_blur(content, 1.5)
    assert float(edge_sharpness(add_content_detail(soft, content, 1.0), content)) > scores[1]
    # a texture unrelated to the content's edges scores far below the content itself at equal gradient energy
    g = torch.Generator().manual_seed(1)
    noise = _gaussian_blur(torch.rand(1, 3, 64, 64, generator=g), 0.7)
    assert float(edge_sharpness(noise, content)) < 0.7 * float(edge_sharpness(content, content))
