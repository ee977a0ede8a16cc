"""Channel statistics and the AdaIN map against independent float64 computations."""
from __future__ import annotations

import pytest
import torch

from adain_nodes.core import stats
from adain_nodes.core.stats import EPS, adain_target, mean_std


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_mean_std_equals_float64_statistics_across_chunks_and_layouts(layout, monkeypatch):
    monkeypatch.setattr(stats, "DEVIATION_CHUNK", 3 * 5 * 7)  # 7 positions a slice: several, the last one short
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 5, 9, 11, generator=g) * 40 + 1000).contiguous(memory_format=layout)  # mean >> spread
    var, expected_mean = torch.var_mean(x.double().flatten(2), dim=2, correction=1)
    mean, std = mean_std(x)
    assert mean.dtype == std.dtype == torch.float32
    assert torch.allclose(mean.double(), expected_mean, rtol=1e-6)
    assert torch.allclose(std.double(), (var + EPS).sqrt(), rtol=1e-5)


def test_mean_std_of_one_position_and_of_bf16():
    swatch = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    mean, std = mean_std(swatch)
    assert torch.equal(mean, swatch.flatten(1)) and torch.allclose(std, torch.full((1, 3), EPS ** 0.5))
    x = torch.rand(2, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    mean, std = mean_std(x.bfloat16())
    assert mean.dtype == torch.bfloat16 and torch.allclose(std.float(), mean_std(x)[1], rtol=1e-2)
    var, _ = torch.var_mean(x.double().flatten(2) + 1e8, dim=2, correction=1)  # float64 keeps what float32 loses
    assert torch.allclose(mean_std(x.double() + 1e8)[1], (var + EPS).sqrt(), rtol=1e-9)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_mean_std_gradient_is_var_means(layout, monkeypatch):
    """The written-out backward against autograd of torch.var_mean, across slices, in both memory formats; in bf16
    (what training feeds it) with float32 statistics the gradient stays bf16 in the features' layout."""
    monkeypatch.setattr(stats, "DEVIATION_CHUNK", 2 * 3 * 7)  # 7 positions a slice of 20: the last one short
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64) * 3 + 5).contiguous(memory_format=layout)
    grad_mean, grad_std = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g,
                                                                                          dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: mean_std(t), (x.clone().requires_grad_(True),))

    def gradient(features, statistics):
        features = features.detach().requires_grad_(True)
        mean, std = statistics(features)
        ((mean * grad_mean.to(mean.dtype)).sum() + (std * grad_std.to(std.dtype)).sum()).backward()
        return features.grad

    def reference(features):
        var, mean = torch.var_mean(features.double().flatten(2), dim=2, correction=1)
        return mean, (var + EPS).sqrt()

    expected = gradient(x, reference)
    got = gradient(x.float(), mean_std)
    assert got.dtype == torch.float32 and got.stride() == x.stride()
    assert torch.allclose(got.double(), expected, atol=1e-6)
    low = x.bfloat16()
    got = gradient(low, lambda t: mean_std(t, dtype=torch.float32))
    assert got.dtype == torch.bfloat16 and got.stride() == low.stride()
    assert torch.allclose(got.double(), gradient(low, reference).double(), rtol=1e-2, atol=1e-3)
    mean, std = mean_std(low, dtype=torch.float32)
    assert mean.dtype == std.dtype == torch.float32
    assert torch.allclose(std.double(), reference(low)[1], rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_unmasked_adain_target_is_the_papers_adain_traded_off_by_alpha(alpha):
    """The affine form (one chain of in-place operations) against eq. 8 of the paper and a lerp, written out."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 5, 7, 9, generator=g) * 4 - 1
    mean, std = torch.randn(2, 5, generator=g), torch.rand(2, 5, generator=g) + 0.5
    own_mean, own_std = x.mean((2, 3)), (x.var((2, 3)) + EPS).sqrt()
    paper = (x - own_mean[..., None, None]) / own_std[..., None, None] * std[..., None, None] + mean[..., None, None]
    expected = x + alpha * (paper - x)
    assert torch.allclose(adain_target(x, mean, std, alpha), expected, atol=1e-5)
    work = x.clone()
    result = adain_target(work, mean, std, alpha, in_place=True)
    assert result.data_ptr() == work.data_ptr() and torch.allclose(result, expected, atol=1e-5)
    weight = torch.rand(2, 1, 7, 9, generator=g)  # the statistics within a soft region, the same map
    in_mean = (x * weight).sum((2, 3)) / weight.sum((2, 3))
    in_var = (weight * (x - in_mean[..., None, None]) ** 2).sum((2, 3)) / (weight.sum((2, 3)) - 1)
    paper = (x - in_mean[..., None, None]) / (in_var + EPS).sqrt()[..., None, None] * std[..., None, None] \
        + mean[..., None, None]
    assert torch.allclose(adain_target(x, mean, std, alpha, weight), x + alpha * (paper - x), atol=1e-4)


