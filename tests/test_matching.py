"""AdaIN Image and AdaIN Latent: statistics against an independent numpy computation, identity, keys, masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adain_nodes.core.stats import EPS
from adain_nodes.errors import AdaINInputError
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from conftest import random_image


def numpy_stats(x: np.ndarray, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and unbiased std of ``[C, ...]`` (float64), optionally of the positions ``where``."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    if where is not None:
        flat = flat[:, where.reshape(-1)]
    return flat.mean(axis=1), flat.std(axis=1, ddof=1)


def adain_std(ref_std: np.ndarray, own_std: np.ndarray) -> np.ndarray:
    """The std AdaIN gives with the reference port's epsilon: sqrt(var_ref + eps) * std / sqrt(var + eps)."""
    return np.sqrt(ref_std ** 2 + EPS) * own_std / np.sqrt(own_std ** 2 + EPS)


def latent(batch: int, channels: int, h: int, w: int, seed: int, scale: float = 1.0, shift: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(batch, channels, max(h // 2, 1), max(w // 2, 1), generator=g)
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear") + 0.3 * torch.randn(
        batch, channels, h, w, generator=g)
    return x * scale + shift


@pytest.mark.parametrize("channels", [4, 16])
def test_latent_takes_reference_statistics(channels):
    x = latent(2, channels, 24, 32, seed=1)
    ref = latent(1, channels, 16, 20, seed=2, scale=torch.linspace(0.5, 3, channels)[:, None, None].numpy().mean(),
                 shift=1.5)
    ref = ref * torch.linspace(0.5, 3, channels)[None, :, None, None]
    out = N["AdaINLatent"]().match({"samples": x}, {"samples": ref}, 1.0)[0]["samples"]
    assert out.shape == x.shape and out.dtype == x.dtype
    ref_mean, ref_std = numpy_stats(ref[0].numpy())
    for b in range(2):
        mean, std = numpy_stats(out[b].numpy())
        np.testing.assert_allclose(mean, ref_mean, atol=1e-4 * max(1, abs(ref_mean).max()))
        np.testing.assert_allclose(std, adain_std(ref_std, numpy_stats(x[b].numpy())[1]), rtol=1e-4)
        # the layout is kept: a per-channel affine map of the input (correlation 1)
        for c in range(channels):
            assert np.corrcoef(out[b, c].flatten(), x[b, c].flatten())[0, 1] > 0.9999


def test_partial_strength_is_the_interpolation():
    x = latent(1, 4, 16, 16, seed=3)
    ref = latent(1, 4, 16, 16, seed=4, scale=2.0, shift=-1.0)
    out = N["AdaINLatent"]().match({"samples": x}, {"samples": ref}, 0.25)[0]["samples"].numpy()
    xm, xs = numpy_stats(x[0].numpy())
    rm, rs = numpy_stats(ref[0].numpy())
    full = (x[0].numpy() - xm[:, None, None]) / xs[:, None, None] * rs[:, None, None] + rm[:, None, None]
    np.testing.assert_allclose(out[0], 0.75 * x[0].numpy() + 0.25 * full, atol=2e-4)


def test_strength_zero_returns_the_input_unchanged():
    x = latent(2, 16, 8, 8, seed=5)
    given = {"samples": x, "noise_mask": torch.ones(2, 1, 64, 64), "batch_index": [3, 4]}
    out = N["AdaINLatent"]().match(given, {"samples": latent(1, 16, 8, 8, seed=6)}, 0.0)[0]
    assert out is given and out["samples"] is x


def test_every_other_latent_key_survives():
    noise_mask, batch_index = torch.rand(2, 1, 64, 64), [7, 8]
    given = {"samples": latent(2, 4, 8, 8, seed=7), "noise_mask": noise_mask, "batch_index": batch_index,
             "type": "audio"}
    out = N["AdaINLatent"]().match(given, {"samples": latent(2, 4, 8, 8, seed=8)}, 0.7)[0]
    assert set(out) == set(given)
    assert out["noise_mask"] is noise_mask and out["batch_index"] is batch_index and out["type"] == "audio"
    assert not torch.equal(out["samples"], given["samples"])
    assert "samples" in given and given["samples"].shape == out["samples"].shape  # input dict not modified


def test_half_precision_latent_keeps_its_dtype():
    x = latent(1, 4, 8, 8, seed=9).half()
    out = N["AdaINLatent"]().match({"samples": x}, {"samples": latent(1, 4, 8, 8, seed=10) * 3}, 1.0)[0]["samples"]
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_video_latent_statistics_over_all_frames():
    x = latent(1, 16, 12, 10, seed=11).reshape(1, 16, 3, 4, 10)
    ref = latent(1, 16, 8, 8, seed=12, scale=0.5, shift=2.0)
    out = N["AdaINLatent"]().match({"samples": x}, {"samples": ref}, 1.0)[0]["samples"]
    assert out.shape == x.shape
    mean, std = numpy_stats(out[0].numpy())
    ref_mean, ref_std = numpy_stats(ref[0].numpy())
    np.testing.assert_allclose(mean, ref_mean, atol=1e-4)
    np.testing.assert_allclose(std, adain_std(ref_std, numpy_stats(x[0].numpy())[1]), rtol=1e-4)


def test_latent_mask_is_resized_to_the_latent_and_limits_the_change():
    x = latent(1, 4, 16, 16, seed=13)
    ref = latent(1, 4, 16, 16, seed=14, scale=2.0, shift=3.0)
    mask = torch.zeros(1, 128, 128)  # image resolution: 8x the latent
    mask[:, :, 64:] = 1.0
    out = N["AdaINLatent"]().match({"samples": x}, {"samples": ref}, 1.0, mask)[0]["samples"]
    assert torch.equal(out[..., :8], x[..., :8])
    inside = np.zeros((16, 16), bool)
    inside[:, 8:] = True
    mean, std = numpy_stats(out[0].numpy(), inside)
    ref_mean, ref_std = numpy_stats(ref[0].numpy())
    np.testing.assert_allclose(mean, ref_mean, atol=1e-4)
    np.testing.assert_allclose(std, adain_std(ref_std, numpy_stats(x[0].numpy(), inside)[1]), rtol=1e-4)


def test_image_takes_reference_statistics_inside_the_mask():
    image = 0.3 + 0.4 * random_image(2, 40, 48, seed=1)
    reference = 0.4 + 0.2 * random_image(1, 30, 30, seed=2)
    mask = torch.zeros(1, 40, 48)
    mask[:, 10:30, 8:40] = 1.0
    out = N["AdaINImage"]().match(image, reference, 1.0, mask)[0]
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out[:, mask[0] == 0], image[:, mask[0] == 0])
    ref_mean, ref_std = numpy_stats(reference[0].permute(2, 0, 1).numpy())
    for b in range(2):
        inside = mask[0].numpy() > 0
        mean, std = numpy_stats(out[b].permute(2, 0, 1).numpy(), inside)
        own_std = numpy_stats(image[b].permute(2, 0, 1).numpy(), inside)[1]
        np.testing.assert_allclose(mean, ref_mean, atol=1e-5)
        np.testing.assert_allclose(std, adain_std(ref_std, own_std), rtol=1e-4)


def test_image_without_mask_and_strength_zero():
    image = 0.2 + 0.5 * random_image(1, 20, 20, seed=3)
    reference = 0.1 + 0.3 * random_image(1, 24, 16, seed=4)
    out = N["AdaINImage"]().match(image, reference, 1.0)[0]
    np.testing.assert_allclose(numpy_stats(out[0].permute(2, 0, 1).numpy())[0],
                               numpy_stats(reference[0].permute(2, 0, 1).numpy())[0], atol=1e-4)
    assert torch.equal(N["AdaINImage"]().match(image, reference, 0.0)[0], image)


def test_batch_rules_and_clear_errors():
    node = N["AdaINLatent"]()
    three = {"samples": latent(3, 4, 8, 8, seed=15)}
    paired = node.match(three, {"samples": latent(3, 4, 8, 8, seed=16)}, 1.0)[0]["samples"]
    single = node.match(three, {"samples": latent(3, 4, 8, 8, seed=16)[1:2]}, 1.0)[0]["samples"]
    assert torch.allclose(paired[1], single[1]) and not torch.allclose(paired[0], single[0])
    with pytest.raises(AdaINInputError, match="batch of 2 .* 3"):
        node.match(three, {"samples": latent(2, 4, 8, 8, seed=17)}, 1.0)
    with pytest.raises(AdaINInputError, match="16 channels but latent has 4"):
        node.match(three, {"samples": latent(1, 16, 8, 8, seed=17)}, 1.0)
    with pytest.raises(AdaINInputError, match="latent: contains NaN"):
        node.match({"samples": torch.full((1, 4, 8, 8), float("nan"))}, three, 1.0)
    with pytest.raises(AdaINInputError, match="reference: expected a LATENT"):
        node.match(three, torch.zeros(1, 4, 8, 8), 1.0)
    with pytest.raises(AdaINInputError, match="the reference's values are too large for float32 statistics"):
        node.match(three, {"samples": latent(1, 4, 8, 8, seed=18) * 1e30}, 1.0)
    with pytest.raises(AdaINInputError, match="overflows float16"):
        node.match({"samples": three["samples"].half()}, {"samples": latent(1, 4, 8, 8, seed=18) * 1e6}, 1.0)
    with pytest.raises(AdaINInputError, match="strength must be"):
        node.match(three, three, 1.5)
    with pytest.raises(AdaINInputError, match="reference has a batch of 2"):
        N["AdaINImage"]().match(random_image(3, 16, 16), random_image(2, 16, 16), 1.0)
    with pytest.raises(AdaINInputError, match="mask"):
        N["AdaINImage"]().match(random_image(3, 16, 16), random_image(1, 16, 16), 1.0, torch.ones(2, 16, 16))
