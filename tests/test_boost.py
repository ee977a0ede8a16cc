"""style_boost: a second transfer that asks past what the first missed of the style's statistics."""
from __future__ import annotations

import math

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.core.stats import BOOST_STD_RATIO_LIMIT, corrected_statistics, mean_std
from adain_nodes.errors import AdaINInputError
from adain_nodes.host.paths import DEFAULT_DECODER
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.weights import load_decoder, save_safetensors
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from adain_nodes.tiling import NO_TILING, Tiling
from conftest import random_image, random_skip_decoder, shared_path
from test_real_weights import load_image, style_distance
from test_tiling import psnr

CPU = StandaloneRuntime(torch.device("cpu"))


def _nchw(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 3, 1, 2).contiguous()


@pytest.fixture
def skip_decoder(tmp_path):
    network = random_skip_decoder(5)
    for conv in network.skip.values():  # engaged, so every level the boost corrects reaches the picture
        torch.nn.init.normal_(conv.weight, std=0.05)
    path = tmp_path / "skip.safetensors"
    save_safetensors(network.state_dict(), path, {"kind": "decoder"})
    return load_decoder(path)


def test_gain_1_lands_a_decoder_with_a_fixed_shortfall_on_its_aim():
    """A decoder that delivers 0.8 x the asked std and the asked mean - 0.1 reaches the aim when asked the
    corrected statistics (gain 1); gain 0 asks the aim itself, gain 0.5 goes half the way in log std."""
    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(2, 16, generator=g), torch.rand(2, 16, generator=g) + 0.5
    deliver = lambda m, s: (m - 0.1, 0.8 * s)  # noqa: E731
    ask = corrected_statistics((mean, std), deliver(mean, std), 1.0)
    got = deliver(*ask)
    torch.testing.assert_close(got[0], mean)
    torch.testing.assert_close(got[1], std)
    assert all(torch.equal(a, b) for a, b in zip(corrected_statistics((mean, std), deliver(mean, std), 0.0),
                                                 (mean, std)))
    half = corrected_statistics((mean, std), deliver(mean, std), 0.5)
    torch.testing.assert_close(half[0], mean + 0.05)
    torch.testing.assert_close(half[1], std / 0.8 ** 0.5)


def test_a_channel_drawn_flat_or_too_strong_is_asked_at_most_the_limit_past_the_style():
    """A first output whose channel came out nearly flat (std 1e-3 of the style's) would ask 30x the style's
    contrast at gain 0.5 unlimited; the ask stops at BOOST_STD_RATIO_LIMIT ** gain either way, and a channel inside
    the limit keeps its exact correction."""
    mean, std = torch.zeros(1, 3), torch.ones(1, 3)
    got_std = torch.tensor([[1e-3, 1e3, 0.8]])
    asked_mean, asked_std = corrected_statistics((mean, std), (mean, got_std), 0.5)
    limit = BOOST_STD_RATIO_LIMIT ** 0.5
    torch.testing.assert_close(asked_std, torch.tensor([[limit, 1 / limit, 0.8 ** -0.5]]))
    torch.testing.assert_close(asked_mean, mean)


def test_boost_is_a_second_transfer_with_the_corrected_style(encoder, skip_decoder):
    """Computed again from the parts: the first transfer at alpha 1, its statistics by the encoder, the
    correction by hand, and a transfer at the user's alpha with them."""
    content, style = _nchw(random_image(2, 48, 56, seed=1)), _nchw(random_image(1, 40, 40, seed=2))
    levels = skip_decoder.network.levels
    with torch.no_grad():
        style_maps = encoder.network.encode(style, levels)
        first = pipeline.stylize(encoder, skip_decoder, content, style, CPU, 1.0)
        first_maps = encoder.network.encode(first, levels)
        asked = {}
        for name, s, f in zip(levels, style_maps, first_maps):
            (sm, ss), (fm, fs) = mean_std(s), mean_std(f)
            ratio = (ss / fs).clamp(1 / BOOST_STD_RATIO_LIMIT, BOOST_STD_RATIO_LIMIT)
            asked[name] = (sm + 0.5 * (sm - fm), ss * ratio ** 0.5)  # style batch 1, content batch 2
    for alpha in (1.0, 0.7):
        boosted = pipeline.stylize(encoder, skip_decoder, content, style, CPU, alpha, boost=0.5)
        by_hand = pipeline.AdaINStyle(asked, encoder.identity, encoder.name)
        features = pipeline.encode(encoder, content, CPU, levels=levels)
        expected = pipeline.decode(skip_decoder, pipeline.blend(features, by_hand, alpha), CPU)
        torch.testing.assert_close(boosted, expected, atol=2e-5, rtol=1e-4)
        assert not torch.allclose(boosted, pipeline.stylize(encoder, skip_decoder, content, style, CPU, alpha))
    assert torch.equal(pipeline.stylize(encoder, skip_decoder, content, style, CPU, 0.7, boost=0.0),
                       pipeline.stylize(encoder, skip_decoder, content, style, CPU, 0.7))


def test_boost_in_tiles_is_seamless(encoder, skip_decoder):
    """Tiles take the whole image's statistics in both transfers, as the plain transfer's do."""
    content, style = _nchw(random_image(1, 256, 192, seed=3)), _nchw(random_image(1, 96, 96, seed=4))
    whole = pipeline.stylize(encoder, skip_decoder, content, style, CPU, 0.9, tiling=NO_TILING, boost=0.5)
    tiled = pipeline.stylize(encoder, skip_decoder, content, style, CPU, 0.9, tiling=Tiling(96, 64), boost=0.5)
    plain = pipeline.stylize(encoder, skip_decoder, content, style, CPU, 0.9, tiling=NO_TILING)
    assert psnr(tiled, whole) >= 40 > psnr(plain, whole)


def test_the_node_takes_style_boost_and_refuses_bad_values(encoder, skip_decoder):
    content, style = random_image(1, 32, 40, seed=5), random_image(1, 32, 32, seed=6)
    node = N["AdaINStyleTransfer"]()
    boosted = node.transfer(encoder, skip_decoder, content, style, 1.0, style_boost=0.5)[0]
    expected = pipeline.stylize(encoder, skip_decoder, _nchw(content), _nchw(style), CPU, 1.0, boost=0.5)
    torch.testing.assert_close(_nchw(boosted), expected)
    assert "style_boost" in N["AdaINStyleTransfer"].INPUT_TYPES()["optional"]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(AdaINInputError, match="style_boost"):
            node.transfer(encoder, skip_decoder, content, style, 1.0, style_boost=bad)


def test_boost_brings_the_default_decoder_nearer_the_style():
    """On real pairs with the real encoder and the shipped default decoder, style_boost 0.5 lowers the style loss
    (geometric mean over four photos x two paintings, as the evaluation averages). Single pairs vary: most gain,
    a few overshoot (the whole grid of ../shared/images, stop 37), so no single pair decides."""
    weights = shared_path("weights", "vgg19_normalised_relu4_1.safetensors").parent
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADAIN_MODELS_DIR", str(weights))
        encoder = N["AdaINEncoderLoader"]().load("vgg19_normalised_relu4_1.safetensors")[0]
        decoder = N["AdaINDecoderLoader"]().load(DEFAULT_DECODER)[0]
    node = N["AdaINStyleTransfer"]()
    log_ratios = []
    for photo in ("skimage_chelsea.png", "skimage_astronaut.png", "tubingen.jpg", "lenna.jpg"):
        content = load_image(shared_path("images", "content", photo))
        for painting in ("starry_night.jpg", "the_scream.jpg"):
            style = load_image(shared_path("images", "style", painting))
            plain, boosted = (node.transfer(encoder, decoder, content, style, 1.0, style_boost=b)[0]
                              for b in (0.0, 0.5))
            log_ratios.append(math.log(style_distance(encoder, boosted, style) / style_distance(encoder, plain, style)))
    assert math.exp(sum(log_ratios) / len(log_ratios)) < 0.95


def test_the_modular_graph_boosts_as_the_one_node_transfer(encoder, skip_decoder):
    """Encode, Stats, Blend (alpha 1), Decode, Boost Style, Blend (alpha), Decode equals AdaIN Style Transfer's
    style_boost; the node refuses a style from another encoder and a bad boost."""
    content, style = random_image(2, 40, 48, seed=7), random_image(1, 32, 32, seed=8)
    features = N["AdaINEncode"]().encode(encoder, content, decoder=skip_decoder)[0]
    stats = N["AdaINStyleStats"]().compute(encoder, style)[0]
    decode = N["AdaINDecode"]()
    first = decode.decode(skip_decoder, N["AdaINBlend"]().blend(features, stats, 1.0)[0])[0]
    boosted = N["AdaINBoostStyle"]().boost(encoder, skip_decoder, stats, first, 0.5)[0]
    assert boosted.count == 2 and set(boosted.levels) == set(stats.levels)  # a whole style, e.g. to save as a preset
    for alpha in (1.0, 0.6):
        graph = decode.decode(skip_decoder, N["AdaINBlend"]().blend(features, boosted, alpha)[0])[0]
        one_node = N["AdaINStyleTransfer"]().transfer(encoder, skip_decoder, content, style, alpha, style_boost=0.5)[0]
        torch.testing.assert_close(graph, one_node)
    other = pipeline.AdaINStyle(stats.levels, "another-encoder", "other.safetensors")
    with pytest.raises(AdaINInputError, match="same encoder"):
        N["AdaINBoostStyle"]().boost(encoder, skip_decoder, other, first, 0.5)
    with pytest.raises(AdaINInputError, match="style_boost"):
        N["AdaINBoostStyle"]().boost(encoder, skip_decoder, stats, first, 2.0)
