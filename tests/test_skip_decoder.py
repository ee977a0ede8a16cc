"""Skip decoders: a second decoder kind, recognised from its file, that also takes AdaIN'd relu3_1 and relu2_1.

Every runtime control (alpha, masks, mixing, presets, tiling, batches) applies at every level, and a relu4_1
decoder (the released decoder.pth included) keeps working exactly as before.
"""
from __future__ import annotations

import math

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.core.image import pad_for_encoder
from adain_nodes.core.layers import ADAIN_LAYER, ENCODER_LAYERS, SKIP_LAYERS
from adain_nodes.core.stats import mean_std
from adain_nodes.errors import AdaINInputError, WeightFileError
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.networks import AdaINDecoder, SkipDecoder
from adain_nodes.models.weights import load_decoder, save_safetensors
from adain_nodes.nodes.features import AdaINBlend, AdaINDecode, AdaINEncode
from adain_nodes.presets import load_style, save_style
from adain_nodes.tiling import NO_TILING, Tiling
from conftest import random_decoder, random_image, random_skip_decoder

RUNTIME = StandaloneRuntime(torch.device("cpu"))


def nchw(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 3, 1, 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


@pytest.fixture
def skip_decoder(tmp_path):
    path = tmp_path / "skip_decoder.safetensors"
    save_safetensors(random_skip_decoder().state_dict(), path, {"kind": "decoder"})
    return load_decoder(path)


@pytest.fixture
def images():
    return nchw(random_image(2, 96, 80, seed=3)), nchw(random_image(1, 64, 72, seed=4))


def test_skips_enter_where_their_level_is_reached():
    decoder = SkipDecoder()
    assert decoder.levels == (ADAIN_LAYER,) + SKIP_LAYERS
    x = torch.randn(1, ENCODER_LAYERS[ADAIN_LAYER].channels, 4, 5)
    levels = [torch.randn(1, ENCODER_LAYERS[n].channels, 4 * 8 // ENCODER_LAYERS[n].stride,
                          5 * 8 // ENCODER_LAYERS[n].stride) for n in SKIP_LAYERS]
    for conv in decoder.skip.values():
        torch.nn.init.normal_(conv.weight, std=0.1)
    with torch.no_grad():
        assert decoder(x, *levels).shape == (1, 3, 32, 40)
    with pytest.raises(ValueError, match="takes the features of"):
        decoder(x, levels[0])


def test_a_fresh_skip_decoder_decodes_exactly_as_its_trunk():
    plain = random_decoder(2)
    skip = SkipDecoder()
    missing, unexpected = skip.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert sorted(missing) == sorted(f"skip.{n}.{p}" for n in SKIP_LAYERS for p in ("weight", "bias"))
    x = torch.randn(1, 512, 4, 4)
    levels = [torch.randn(1, 256, 8, 8), torch.randn(1, 128, 16, 16)]
    with torch.no_grad():
        assert torch.equal(skip(x, *levels), plain(x))


def test_fast_inference_equals_the_training_forward():
    decoder = random_skip_decoder(3)
    x = torch.randn(2, 512, 5, 6)
    levels = [torch.randn(2, 256, 10, 12), torch.randn(2, 128, 20, 24)]
    with torch.no_grad():
        reference = decoder(x, *levels)
    with torch.inference_mode():
        fast = decoder.infer(x, *levels)
    assert (fast - reference).abs().max() <= 1e-4 * reference.abs().max()
    with torch.no_grad():  # the skips change the picture, or this test could not tell them from the trunk
        assert (decoder(x, *[torch.zeros_like(t) for t in levels]) - reference).abs().max() > 1e-3


def test_the_file_says_which_kind_it_is(tmp_path, skip_decoder):
    assert isinstance(skip_decoder.network, SkipDecoder)
    plain_file = tmp_path / "plain.safetensors"
    save_safetensors(random_decoder().state_dict(), plain_file, {})
    assert type(load_decoder(plain_file).network) is AdaINDecoder
    torch.save(random_decoder().state_dict(), tmp_path / "decoder.pth")  # the reference port's format
    assert type(load_decoder(tmp_path / "decoder.pth").network) is AdaINDecoder
    half = {k: v for k, v in random_skip_decoder().state_dict().items() if k != "skip.relu2_1.bias"}
    save_safetensors(half, tmp_path / "half.safetensors", {})
    with pytest.raises(WeightFileError, match="skip.relu2_1.bias"):
        load_decoder(tmp_path / "half.safetensors")


def test_stylize_with_a_skip_decoder_uses_the_skips(encoder, decoder, skip_decoder, images):
    content, style = images
    with_skips = pipeline.stylize(encoder, skip_decoder, content, style, RUNTIME)
    trunk = pipeline.stylize(encoder, decoder, content, style, RUNTIME)  # the same trunk weights
    assert with_skips.shape == trunk.shape == content.shape
    assert torch.isfinite(with_skips).all()
    assert (with_skips - trunk).abs().max() > 1e-3


def test_features_for_a_plain_decoder_carry_no_skips_and_decode_as_before(encoder, decoder, images):
    content, style = images
    features = pipeline.encode(encoder, content, RUNTIME)
    assert set(features.levels) == {ADAIN_LAYER}
    styled = pipeline.blend(features, pipeline.style_statistics(encoder, style, RUNTIME))
    assert torch.equal(pipeline.decode(decoder, styled, RUNTIME),
                       pipeline.stylize(encoder, decoder, content, style, RUNTIME))


def test_skip_features_are_the_encoder_layers(encoder, images):
    content, _ = images
    features = pipeline.encode(encoder, content, RUNTIME, levels=SkipDecoder.levels)
    with torch.no_grad():
        reference = encoder.network.encode(pad_for_encoder(content), SkipDecoder.levels)
    for found, expected in zip([features.features] + [features.levels[n] for n in SKIP_LAYERS], reference):
        assert (found - expected).abs().max() <= 1e-4 * expected.abs().max()
    with pytest.raises(ValueError, match="levels must be"):
        pipeline.encode(encoder, content, RUNTIME, levels=("relu3_1",))


def test_a_skip_decoder_names_the_missing_connection(encoder, skip_decoder, images):
    features = pipeline.encode(encoder, images[0], RUNTIME)
    with pytest.raises(AdaINInputError, match="'decoder' input"):
        pipeline.decode(skip_decoder, features, RUNTIME)


def test_blend_applies_alpha_and_masks_at_every_level(encoder, images):
    content, style_image = images
    features = pipeline.encode(encoder, content, RUNTIME, levels=SkipDecoder.levels)
    style = pipeline.style_statistics(encoder, style_image, RUNTIME)
    full = pipeline.blend(features, style)
    for name in SKIP_LAYERS:
        mean, std = mean_std(full.levels[name])
        assert torch.allclose(mean, style.levels[name][0].expand_as(mean), atol=1e-3)
        # channels near zero in the content or the style re-measure with the epsilon added twice
        live = (style.levels[name][1] > 0.05) & (mean_std(features.levels[name])[1] > 0.05)
        assert torch.allclose(std[live], style.levels[name][1].expand_as(std)[live], rtol=1e-3)
    untouched = pipeline.blend(features, style, alpha=0.0)
    everywhere = pipeline.blend(features, style, mask=torch.ones(1, 96, 80))
    nowhere = pipeline.blend(features, style, mask=torch.zeros(1, 96, 80))
    half = pipeline.blend(features, style, alpha=0.5)
    for name in SKIP_LAYERS:
        content_level = features.levels[name]
        assert torch.allclose(untouched.levels[name], content_level, atol=1e-5)
        assert torch.allclose(everywhere.levels[name], full.levels[name], atol=1e-4)
        assert torch.equal(nowhere.levels[name], content_level)
        assert torch.allclose(half.levels[name], 0.5 * (content_level + full.levels[name]), atol=1e-4)
    left = torch.zeros(1, 96, 80)
    left[..., :40] = 1
    region = pipeline.blend(features, style, mask=left)
    for name in SKIP_LAYERS:
        edge = 40 // ENCODER_LAYERS[name].stride
        assert torch.equal(region.levels[name][..., edge + 1:], features.levels[name][..., edge + 1:])
        assert not torch.allclose(region.levels[name][..., :edge - 1], features.levels[name][..., :edge - 1])


def test_mixing_and_batches_of_styles_reach_every_level(encoder, images):
    content, _ = images
    a = pipeline.style_statistics(encoder, nchw(random_image(1, 64, 64, seed=7)), RUNTIME)
    b = pipeline.style_statistics(encoder, nchw(random_image(1, 64, 64, seed=8)), RUNTIME)
    only_a = pipeline.mix_styles([a, b], [1.0, 0.0])
    middle = pipeline.mix_styles([a, b], [1.0, 1.0])
    both = pipeline.stack_styles([a, b])
    for name in SKIP_LAYERS:
        assert torch.allclose(only_a.levels[name][0], a.levels[name][0])
        assert torch.allclose(middle.levels[name][1], (a.levels[name][1] + b.levels[name][1]) / 2)
        assert torch.equal(both.levels[name][0], torch.cat([a.levels[name][0], b.levels[name][0]]))
    styled = pipeline.blend(pipeline.encode(encoder, content, RUNTIME, levels=SkipDecoder.levels), both)
    second, _ = mean_std(styled.levels["relu2_1"][1:])
    assert torch.allclose(second, b.levels["relu2_1"][0], atol=1e-3)


def test_masked_style_statistics_at_every_level(encoder):
    style = nchw(random_image(1, 64, 64, seed=9))
    whole = pipeline.style_statistics(encoder, style, RUNTIME)
    masked = pipeline.style_statistics(encoder, style, RUNTIME, mask=torch.ones(1, 64, 64))
    for name in SKIP_LAYERS:
        assert torch.allclose(whole.levels[name][0], masked.levels[name][0], atol=1e-4)
    top = torch.zeros(1, 64, 64)
    top[:, :32] = 1
    half = pipeline.style_statistics(encoder, style, RUNTIME, mask=top)
    with torch.no_grad():
        level = encoder.network.encode(style, ("relu2_1",))[0]
    assert torch.allclose(half.levels["relu2_1"][0], level[..., :16, :].mean(dim=(2, 3)), atol=1e-3)


def test_presets_keep_every_level_and_old_presets_say_what_to_do(encoder, skip_decoder, images, tmp_path):
    content, style_image = images
    style = pipeline.style_statistics(encoder, style_image, RUNTIME)
    save_style(style, tmp_path / "s.safetensors")
    loaded = load_style(tmp_path / "s.safetensors")
    for name in SKIP_LAYERS:
        assert torch.equal(loaded.levels[name][0], style.levels[name][0])
        assert torch.equal(loaded.levels[name][1], style.levels[name][1])
    old = pipeline.AdaINStyle({ADAIN_LAYER: (style.mean, style.std)}, style.encoder_id, style.encoder_name)
    save_style(old, tmp_path / "old.safetensors")
    old = load_style(tmp_path / "old.safetensors")
    features = pipeline.encode(encoder, content, RUNTIME, levels=SkipDecoder.levels)
    with pytest.raises(AdaINInputError, match="compute the style again"):
        pipeline.blend(features, old)
    pipeline.blend(pipeline.encode(encoder, content, RUNTIME), old)  # relu4_1 decoders: still fine
    tensors = {"mean": style.mean, "std": style.std, "mean.relu3_1": style.levels["relu3_1"][0]}
    save_safetensors(tensors, tmp_path / "torn.safetensors",
                     {"format": "adain-style", "encoder_id": style.encoder_id, "layer": ADAIN_LAYER})
    with pytest.raises(WeightFileError, match="not an AdaIN style preset"):
        load_style(tmp_path / "torn.safetensors")
    tensors["std.relu3_1"] = style.levels["relu3_1"][1][:, :7]
    tensors["mean.relu3_1"] = style.levels["relu3_1"][0][:, :7]
    save_safetensors(tensors, tmp_path / "narrow.safetensors",
                     {"format": "adain-style", "encoder_id": style.encoder_id, "layer": ADAIN_LAYER})
    with pytest.raises(WeightFileError, match="corrupt"):
        load_style(tmp_path / "narrow.safetensors")


def test_tiled_skip_decoding_is_seamless(encoder, skip_decoder):
    content, style = nchw(random_image(1, 256, 192, seed=1)), nchw(random_image(1, 96, 96, seed=2))
    whole = pipeline.stylize(encoder, skip_decoder, content, style, RUNTIME, tiling=NO_TILING)
    tiled = pipeline.stylize(encoder, skip_decoder, content, style, RUNTIME, tiling=Tiling(size=96, overlap=64))
    features = pipeline.encode(encoder, content, RUNTIME, NO_TILING, SkipDecoder.levels)
    tiled_features = pipeline.encode(encoder, content, RUNTIME, Tiling(size=64, overlap=64), SkipDecoder.levels)
    for name in SKIP_LAYERS:
        expected = features.levels[name]
        assert (tiled_features.levels[name] - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert psnr(tiled, whole) >= 40


def test_the_nodes_wire_a_skip_decoder(encoder, skip_decoder, images):
    content, style_image = images
    host = content.permute(0, 2, 3, 1)
    style = pipeline.style_statistics(encoder, style_image, RUNTIME)
    plain = AdaINEncode().encode(encoder, host)[0]
    assert set(plain.levels) == {ADAIN_LAYER}
    features = AdaINEncode().encode(encoder, host, decoder=skip_decoder)[0]
    assert set(features.levels) == set(SkipDecoder.levels)
    image = AdaINDecode().decode(skip_decoder, AdaINBlend().blend(features, style, 1.0)[0])[0]
    expected = pipeline.stylize(encoder, skip_decoder, content, style_image, RUNTIME).permute(0, 2, 3, 1)
    assert (image - expected).abs().max() < 1e-4


def test_residual_blocks_start_as_the_identity_and_run_on_the_fast_path(tmp_path):
    """Blocks sit on the grid of their level before its upsampling; a fresh block changes nothing; trained ones
    change the picture alike on both paths; the file declares them and loads as the same decoder."""
    plain = random_skip_decoder(3)
    blocked = SkipDecoder(SKIP_LAYERS, ("relu4_1", "relu3_1", "relu2_1"))
    missing, unexpected = blocked.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("block.") for key in missing)
    assert {name: blocked.block[name][1].in_channels for name in blocked.block} == {
        "relu4_1": 256, "relu3_1": 128, "relu2_1": 64}  # the trunk's width just before each upsampling
    x = torch.randn(2, 512, 5, 6)
    levels = [torch.randn(2, 256, 10, 12), torch.randn(2, 128, 20, 24)]
    with torch.no_grad():
        assert torch.equal(blocked(x, *levels), plain(x, *levels))
        for block in blocked.block.values():
            torch.nn.init.normal_(block[-1].weight, std=0.05)
        reference = blocked(x, *levels)
        assert (reference - plain(x, *levels)).abs().max() > 1e-3
    with torch.inference_mode():
        fast = blocked.infer(x, *levels)
    assert (fast - reference).abs().max() <= 1e-4 * reference.abs().max()
    save_safetensors(blocked.state_dict(), tmp_path / "blocked.safetensors", {})
    loaded = load_decoder(tmp_path / "blocked.safetensors").network
    assert loaded.blocks == ("relu4_1", "relu3_1", "relu2_1") and loaded.levels == blocked.levels
    with torch.no_grad():
        assert torch.equal(loaded(x, *levels), reference)
    with pytest.raises(ValueError, match="no upsampling that leaves the grid"):
        SkipDecoder(SKIP_LAYERS, ("relu1_1",))


def test_a_decoder_with_blocks_stylizes_tiled_and_untiled_alike(encoder, tmp_path):
    """A file with residual blocks goes through the whole transfer: tiles agree with the whole image, and the blocks
    change the picture (so the path cannot be skipping them)."""
    network = SkipDecoder(SKIP_LAYERS, ("relu4_1", "relu3_1"))
    network.load_state_dict(random_skip_decoder(5).state_dict(), strict=False)
    torch.manual_seed(5)
    for block in network.block.values():
        torch.nn.init.normal_(block[-1].weight, std=0.02)
    save_safetensors(network.state_dict(), tmp_path / "blocks.safetensors", {})
    blocks = load_decoder(tmp_path / "blocks.safetensors")
    save_safetensors(random_skip_decoder(5).state_dict(), tmp_path / "plain.safetensors", {})
    plain = load_decoder(tmp_path / "plain.safetensors")
    content, style = nchw(random_image(1, 256, 192, seed=1)), nchw(random_image(1, 96, 96, seed=2))
    whole = pipeline.stylize(encoder, blocks, content, style, RUNTIME, tiling=NO_TILING)
    tiled = pipeline.stylize(encoder, blocks, content, style, RUNTIME, tiling=Tiling(size=96, overlap=64))
    assert psnr(tiled, whole) >= 40
    assert psnr(pipeline.stylize(encoder, plain, content, style, RUNTIME, tiling=NO_TILING), whole) < 40
