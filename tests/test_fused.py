"""The fused layers of the inference fast path equal the reference layers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adain_nodes.core.layers import STYLE_LAYERS
from adain_nodes.models.networks import AdaINDecoder, VGGEncoder
from adain_nodes.models.fused import reflect_conv3x3, run_fused, upsample_conv2d
from conftest import he_init


def _reference(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return conv(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect"))


@pytest.mark.parametrize("size", [(1, 1), (1, 2), (3, 5), (8, 8), (13, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_conv_equals_upsample_pad_conv(size, channels_last):
    torch.manual_seed(sum(size))
    conv = nn.Conv2d(6, 5, 3)
    x = torch.randn(2, 6, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = _reference(x, conv)
    with torch.inference_mode():
        got = upsample_conv2d(x, conv)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_decoder_infer_equals_forward():
    decoder = he_init(AdaINDecoder(), seed=0, image_output=True)
    features = torch.randn(2, 512, 17, 16).relu()  # 136x128 output: every fusion engages
    expected = decoder(features)
    with torch.inference_mode():
        got = decoder.infer(features.contiguous(memory_format=torch.channels_last))
    assert got.shape == (2, 3, 136, 128)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale


def test_decoder_infer_under_bf16_autocast_stays_close():
    decoder = he_init(AdaINDecoder(), seed=1, image_output=True)
    features = torch.randn(1, 512, 4, 4).relu()
    expected = decoder(features)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = decoder.infer(features).float()
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()


def test_encoder_input_layers_stay_float32_under_bf16_autocast():
    """The image itself is never rounded to bf16: relu1_1 is exact, the layers after it are not."""
    encoder = he_init(VGGEncoder(), seed=0)
    image = torch.rand(1, 3, 24, 24)
    with torch.inference_mode():
        exact = encoder.encode(image, ("relu1_1", "relu2_1"), fast=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = encoder.encode(image, ("relu1_1", "relu2_1"), fast=True)
    assert mixed[0].dtype == torch.float32 and torch.equal(mixed[0], exact[0])
    assert mixed[1].dtype == torch.bfloat16 and not torch.equal(mixed[1].float(), exact[1])


@pytest.mark.parametrize("size", [(2, 2), (2, 9), (7, 3), (16, 16)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_reflect_conv_equals_pad_then_conv(size, channels_last):
    torch.manual_seed(sum(size))
    conv = nn.Conv2d(4, 6, 3)
    x = torch.randn(3, 4, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
    with torch.inference_mode():
        got = reflect_conv3x3(x, conv)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_encoder_fast_path_equals_reference_at_every_layer():
    encoder = he_init(VGGEncoder(), seed=2)
    image = torch.rand(2, 3, 136, 128)  # large enough for the fused reflection padding at relu1_x
    expected = encoder.encode(image, STYLE_LAYERS)
    with torch.inference_mode():
        got = encoder.encode(image.contiguous(memory_format=torch.channels_last), STYLE_LAYERS, fast=True)
    for name, e, g in zip(STYLE_LAYERS, expected, got):
        assert g.shape == e.shape, name
        assert (g - e).abs().max() <= 1e-5 * e.abs().max(), name


def test_fast_path_refuses_autograd():
    with pytest.raises(RuntimeError, match="inference"):
        run_fused(AdaINDecoder(), torch.rand(1, 512, 2, 2))
