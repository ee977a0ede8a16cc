"""Values the maths must handle or refuse: a 1x1 reference (a colour swatch) has a mean and no spread; a style
mask that selects nothing has no style; latents and presets far beyond any model's range, and integer latents,
are refused rather than turned into a flat picture."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from adain_nodes.core.stats import mean_std
from adain_nodes.errors import AdaINInputError, WeightFileError
from adain_nodes.nodes.matching import AdaINImage, AdaINLatent
from adain_nodes.nodes.styles import AdaINStyleStats
from adain_nodes.nodes.transfer import AdaINMatchColor
from adain_nodes.pipeline import AdaINStyle
from adain_nodes.presets import load_style, save_style
from adain_nodes.runner.latent_nodes import FORMAT_MARKER, load_latent_file
from conftest import random_image


def test_a_single_position_has_its_value_as_mean_and_no_spread():
    mean, std = mean_std(torch.tensor([[[[0.25]], [[0.5]], [[0.75]]]]))
    assert torch.equal(mean, torch.tensor([[0.25, 0.5, 0.75]])) and torch.isfinite(std).all()
    assert torch.allclose(std, torch.full((1, 3), 1e-5).sqrt())


def test_adain_image_with_a_colour_swatch_gives_that_colour_as_match_color_does():
    image = random_image(1, 24, 32)  # host IMAGE [B, H, W, 3]
    swatch = torch.tensor([0.8, 0.3, 0.1]).view(1, 1, 1, 3)
    (adjusted,) = AdaINImage().match(image, swatch, 1.0)
    (recoloured,) = AdaINMatchColor().match(image, swatch)
    assert torch.isfinite(adjusted).all() and adjusted.shape == image.shape
    assert torch.allclose(adjusted, swatch.expand_as(image), atol=0.02)
    assert torch.allclose(adjusted, recoloured, atol=0.02)
    (half,) = AdaINImage().match(image, swatch, 0.5)  # strength still blends
    assert torch.allclose(half, 0.5 * image + 0.5 * adjusted, atol=1e-5)


def test_adain_latent_with_a_one_position_reference():
    latent = {"samples": torch.randn(2, 4, 8, 8)}
    reference = {"samples": torch.tensor([1.0, -2.0, 0.5, 3.0]).view(1, 4, 1, 1)}
    (result,) = AdaINLatent().match(latent, reference, 1.0)
    assert torch.allclose(result["samples"].mean(dim=(2, 3)), reference["samples"].view(1, 4).expand(2, 4), atol=1e-4)


@pytest.mark.parametrize("which", ["latent", "reference"])
def test_latents_near_1e30_are_refused_not_flattened(which):
    huge = torch.randn(1, 4, 8, 8) * 1e30
    normal = torch.randn(1, 4, 8, 8)
    latent, reference = (huge, normal) if which == "latent" else (normal, huge)
    with pytest.raises(AdaINInputError, match=f"the {which}'s values are too large"):
        AdaINLatent().match({"samples": latent}, {"samples": reference}, 1.0)


def test_integer_latents_are_refused():
    with pytest.raises(AdaINInputError, match="holds integers"):
        AdaINLatent().match({"samples": torch.randint(0, 5, (1, 4, 8, 8))}, {"samples": torch.randn(1, 4, 8, 8)}, 1.0)


@pytest.mark.parametrize("content", ["integers", "1e30", "no latent"])
def test_latent_files_beyond_any_vae_are_refused(tmp_path, content):
    tensors = {"latent_tensor": {"integers": torch.ones(1, 4, 8, 8, dtype=torch.int32),
                                 "1e30": torch.full((1, 4, 8, 8), 1e30)}.get(content, torch.zeros(1)),
               FORMAT_MARKER: torch.tensor([])}
    if content == "no latent":
        tensors = {"samples": torch.zeros(1, 4, 8, 8)}
    save_file(tensors, tmp_path / "x.latent")
    with pytest.raises(ValueError, match="save it again"):
        load_latent_file(tmp_path / "x.latent")


def test_a_style_mask_that_selects_nothing_is_refused(encoder):
    image = random_image(2, 64, 64)
    mask = torch.zeros(2, 64, 64)
    mask[0, 10:30, 10:30] = 1.0  # the first image has a region, the second none
    with pytest.raises(AdaINInputError, match=r"selects nothing of style image\(s\) \[2\]"):
        AdaINStyleStats().compute(encoder, image, mask=mask)
    (style,) = AdaINStyleStats().compute(encoder, image[:1], mask=mask[:1])
    assert torch.isfinite(style.mean).all() and style.std.max() > 0.1  # a real region: a real spread


def test_presets_with_values_near_1e30_are_refused(tmp_path):
    style = AdaINStyle({"relu4_1": (torch.full((1, 512), 1e30), torch.ones(1, 512))}, "id", "enc")
    save_style(style, tmp_path / "huge.safetensors")
    with pytest.raises(WeightFileError, match="beyond the 10000 no encoder gives"):
        load_style(tmp_path / "huge.safetensors")
    ordinary = AdaINStyle({"relu4_1": (torch.full((1, 512), 3.0), torch.ones(1, 512))}, "id", "enc")
    save_style(ordinary, tmp_path / "ok.safetensors")
    assert load_style(tmp_path / "ok.safetensors").mean.max() == 3.0
