"""One shape for every AdaIN level: a new level is a row of the layer table and a decoder that declares it.

Nothing else (pipeline, tiling, presets, nodes) names a level, so a decoder that also takes relu1_1, or a layer
added to the table, runs encode -> style -> blend -> decode -> preset -> blend -> decode unchanged.
"""
from __future__ import annotations

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.core import layers
from adain_nodes.core.layers import ADAIN_LAYER, ENCODER_LAYERS, EncoderLayer
from adain_nodes.core.stats import mean_std
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.networks import SkipDecoder
from adain_nodes.models.weights import load_decoder, save_safetensors
from adain_nodes.presets import load_style, save_style
from adain_nodes.tiling import NO_TILING, Tiling
from conftest import random_decoder, random_image

RUNTIME = StandaloneRuntime(torch.device("cpu"))


def skip_decoder_file(path, skips: tuple[str, ...]):
    """A random skip decoder of ``skips`` whose skip convolutions are not zero (so they show), as a file."""
    decoder = SkipDecoder(skips)
    decoder.load_state_dict(random_decoder(4).state_dict(), strict=False)
    torch.manual_seed(4)
    for conv in decoder.skip.values():
        torch.nn.init.normal_(conv.weight, std=0.05)
    save_safetensors(decoder.state_dict(), path, {"kind": "decoder"})
    return load_decoder(path)


def round_trip(encoder, decoder, tmp_path, new_level: str) -> None:
    content = random_image(1, 48, 40, seed=1).permute(0, 3, 1, 2)
    style_image = random_image(1, 40, 48, seed=2).permute(0, 3, 1, 2)
    assert decoder.network.levels[-1] == new_level
    features = pipeline.encode(encoder, content, RUNTIME, NO_TILING, decoder.network.levels)
    assert set(features.levels) == set(decoder.network.levels)
    style = pipeline.style_statistics(encoder, style_image, RUNTIME)
    assert new_level in style.levels  # styles carry every level of the table
    styled = pipeline.blend(features, style)
    mean, _ = mean_std(styled.levels[new_level])
    assert torch.allclose(mean, style.levels[new_level][0], atol=1e-3)  # AdaIN'd like the AdaIN layer
    image = pipeline.decode(decoder, styled, RUNTIME)
    assert image.shape == content.shape and torch.isfinite(image).all()
    save_style(style, tmp_path / "style.safetensors")
    loaded = load_style(tmp_path / "style.safetensors")
    assert torch.equal(loaded.levels[new_level][1], style.levels[new_level][1])
    again = pipeline.decode(decoder, pipeline.blend(features, loaded), RUNTIME)
    assert torch.equal(again, image)
    tiled = pipeline.stylize(encoder, decoder, content, style_image, RUNTIME, tiling=Tiling(64, 32))
    assert tiled.shape == image.shape and torch.isfinite(tiled).all()
    # the new level changes the picture, or this test could not tell it from the other levels
    without = dict(styled.levels)
    without[new_level] = torch.zeros_like(without[new_level])
    plain = pipeline.decode(decoder, pipeline.AdaINFeatures(without, styled.image_size, styled.encoder_id,
                                                            styled.encoder_name), RUNTIME)
    assert (plain - image).abs().max() > 1e-3


def test_a_decoder_with_relu1_1_needs_no_other_change(encoder, tmp_path):
    decoder = skip_decoder_file(tmp_path / "deep.safetensors", ("relu3_1", "relu2_1", "relu1_1"))
    assert decoder.network.levels == (ADAIN_LAYER, "relu3_1", "relu2_1", "relu1_1")  # recognised from its keys
    round_trip(encoder, decoder, tmp_path, "relu1_1")


def test_a_new_row_of_the_layer_table_and_a_decoder_are_all_a_level_takes(encoder, tmp_path, monkeypatch):
    """relu1_2 (after conv1_2 of the same VGG19) is not in the table: adding the row is enough."""
    monkeypatch.setitem(ENCODER_LAYERS, "relu1_2", EncoderLayer("relu1_2", 7, 64, 1))
    assert layers.ENCODER_LAYERS is ENCODER_LAYERS
    decoder = skip_decoder_file(tmp_path / "new.safetensors", ("relu3_1", "relu1_2"))
    assert decoder.network.levels == (ADAIN_LAYER, "relu3_1", "relu1_2")
    round_trip(encoder, decoder, tmp_path, "relu1_2")


def test_presets_saved_before_the_extra_levels_still_load(encoder, tmp_path):
    """relu4_1 only (the first presets) and with mean.relu3_1/relu2_1 (the skip decoder's first presets)."""
    style = pipeline.style_statistics(encoder, random_image(1, 32, 32, seed=3).permute(0, 3, 1, 2), RUNTIME)
    meta = {"format": "adain-style", "encoder_id": style.encoder_id, "encoder_name": "e", "layer": ADAIN_LAYER}
    save_safetensors({"mean": style.mean, "std": style.std}, tmp_path / "v1.safetensors", meta)
    assert set(load_style(tmp_path / "v1.safetensors").levels) == {ADAIN_LAYER}
    skips = {f"{kind}.{name}": style.levels[name][i] for name in ("relu3_1", "relu2_1")
             for i, kind in enumerate(("mean", "std"))}
    save_safetensors({"mean": style.mean, "std": style.std, **skips}, tmp_path / "v2.safetensors", meta)
    loaded = load_style(tmp_path / "v2.safetensors")
    assert set(loaded.levels) == {ADAIN_LAYER, "relu3_1", "relu2_1"}
    assert torch.equal(loaded.levels["relu2_1"][0], style.levels["relu2_1"][0])


@pytest.mark.parametrize("levels", [("relu3_1",), (ADAIN_LAYER, "relu9_1"), (ADAIN_LAYER, ADAIN_LAYER)])
def test_encode_refuses_levels_the_table_does_not_have(encoder, levels):
    with pytest.raises(ValueError, match="levels must be"):
        pipeline.encode(encoder, torch.rand(1, 3, 16, 16), RUNTIME, levels=levels)
