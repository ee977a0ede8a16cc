"""Parity with an independent, straightforward implementation of the paper's pipeline (fp32, CPU).

The reference below is written the way the paper and the reference port state it, module by
module, without the pack's builders; the released-layout files are written with ``torch.save``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adain_nodes import pipeline
from adain_nodes.core.color import match_color
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.weights import load_decoder, load_encoder
from conftest import he_init

TOL = 1e-5


def reference_vgg() -> nn.Sequential:
    def block(cin, cout):
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]

    def pool():
        return nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)

    layers = [nn.Conv2d(3, 3, (1, 1))]
    layers += block(3, 64) + block(64, 64) + [pool()]
    layers += block(64, 128) + block(128, 128) + [pool()]
    layers += block(128, 256) + block(256, 256) + block(256, 256) + block(256, 256) + [pool()]
    layers += block(256, 512) + block(512, 512) + block(512, 512) + block(512, 512) + [pool()]
    layers += block(512, 512) + block(512, 512) + block(512, 512) + block(512, 512)
    assert len(layers) == 53
    return nn.Sequential(*layers)


def reference_decoder() -> nn.Sequential:
    def block(cin, cout, relu=True):
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3))] + ([nn.ReLU()] if relu else [])

    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    return nn.Sequential(*block(512, 256), up(), *block(256, 256), *block(256, 256), *block(256, 256),
                         *block(256, 128), up(), *block(128, 128), *block(128, 64), up(), *block(64, 64),
                         *block(64, 3, relu=False))


def calc_mean_std(feat, eps=1e-5):
    n, c = feat.size()[:2]
    var = feat.view(n, c, -1).var(dim=2) + eps
    return feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def reference_adain(content_feat, style_feat):
    style_mean, style_std = calc_mean_std(style_feat)
    content_mean, content_std = calc_mean_std(content_feat)
    normalized = (content_feat - content_mean.expand(content_feat.size())) / content_std.expand(content_feat.size())
    return normalized * style_std.expand(content_feat.size()) + style_mean.expand(content_feat.size())


def reference_style_transfer(vgg, decoder, content, style, alpha=1.0, weights=None):
    """Test-time procedure of the reference port, including its style interpolation."""
    encoder = vgg[:31]
    content_f, style_f = encoder(content), encoder(style)
    if weights is None:
        feat = reference_adain(content_f, style_f)
    else:
        base = reference_adain(content_f.expand_as(style_f), style_f)
        feat = sum(w * base[i:i + 1] for i, w in enumerate(weights))
    feat = feat * alpha + content_f * (1 - alpha)
    return decoder(feat)


def reference_color_match(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean/covariance colour matching (paper section 7.3) with SVD square roots in numpy float64."""
    s = source.reshape(3, -1).astype(np.float64)
    t = target.reshape(3, -1).astype(np.float64)

    def sqrtm(m, power):
        u, d, _ = np.linalg.svd(m)
        return u @ np.diag((d + 1e-8) ** power) @ u.T

    cs, ct = np.cov(s) + 1e-5 * np.eye(3), np.cov(t) + 1e-5 * np.eye(3)
    out = sqrtm(ct, 0.5) @ sqrtm(cs, -0.5) @ (s - s.mean(1, keepdims=True)) + t.mean(1, keepdims=True)
    return np.clip(out.reshape(source.shape), 0, 1)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Random networks saved in the released layout and legacy pickle format, plus the pack's loads of them."""
    folder = tmp_path_factory.mktemp("released")
    vgg, decoder = he_init(reference_vgg(), seed=0), he_init(reference_decoder(), seed=1, image_output=True)
    torch.save(vgg.state_dict(), folder / "vgg_normalised.pth", _use_new_zipfile_serialization=False)
    torch.save(decoder.state_dict(), folder / "decoder.pth", _use_new_zipfile_serialization=False)
    return vgg, decoder, load_encoder(folder / "vgg_normalised.pth"), load_decoder(folder / "decoder.pth")


def images(seed, batch=1, size=(48, 64)):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, size[0] // 8, size[1] // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)


def test_encoder_layers_match_reference(released):
    vgg, _, encoder, _ = released
    x = images(1)
    ours = encoder.network.encode(x, ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    for ref_end, got in zip((4, 11, 18, 31), ours):
        with torch.no_grad():
            expected = vgg[:ref_end](x)
        assert got.shape == expected.shape
        assert expected.std() > 0.1
        assert (got - expected).abs().max() <= TOL


@pytest.mark.parametrize("alpha", [1.0, 0.6, 0.0])
def test_stylization_matches_reference(released, alpha):
    vgg, ref_decoder, encoder, decoder = released
    content, style = images(2), images(3, size=(40, 56))
    with torch.no_grad():
        expected = reference_style_transfer(vgg, ref_decoder, content, style, alpha)
    got = pipeline.stylize(encoder, decoder, content, style, StandaloneRuntime(torch.device("cpu")), alpha)
    inside = ((expected > 0) & (expected < 1)).float().mean()
    assert inside > 0.5, "random decoder output should mostly lie in 0..1 for a meaningful comparison"
    assert (got - expected.clamp(0, 1)).abs().max() <= TOL


def test_style_interpolation_matches_reference(released):
    vgg, ref_decoder, encoder, decoder = released
    runtime = StandaloneRuntime(torch.device("cpu"))
    content = images(4)
    styles = torch.cat([images(10 + i, size=(48, 64)) for i in range(3)])
    weights = [0.5, 0.3, 0.2]
    with torch.no_grad():
        expected = reference_style_transfer(vgg, ref_decoder, content, styles, 0.8, weights)
    stats = [pipeline.style_statistics(encoder, styles[i:i + 1], runtime) for i in range(3)]
    mixed = pipeline.mix_styles(stats, [5, 3, 2])  # normalised to 0.5, 0.3, 0.2
    got = pipeline.decode(decoder, pipeline.blend(pipeline.encode(encoder, content, runtime), mixed, 0.8), runtime)
    assert (got - expected.clamp(0, 1)).abs().max() <= TOL


def test_color_preservation_matches_reference(released):
    vgg, ref_decoder, encoder, decoder = released
    content, style = images(5), images(6, size=(40, 56))
    recoloured = torch.from_numpy(reference_color_match(style[0].numpy(), content[0].numpy())).float()[None]
    assert (match_color(style, content) - recoloured).abs().max() <= TOL
    with torch.no_grad():
        expected = reference_style_transfer(vgg, ref_decoder, content, recoloured)
    got = pipeline.stylize(encoder, decoder, content, style, StandaloneRuntime(torch.device("cpu")),
                           color="match style colors")
    assert (got - expected.clamp(0, 1)).abs().max() <= TOL
