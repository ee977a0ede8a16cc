"""The fused upsample + convolution of the decoder's fast path equals the reference layers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adain_nodes.models.networks import AdaINDecoder
from adain_nodes.models.subpixel import upsample_conv2d
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
    features = torch.randn(2, 512, 5, 7).relu()
    expected = decoder(features)
    with torch.inference_mode():
        got = decoder.infer(features.contiguous(memory_format=torch.channels_last))
    assert got.shape == (2, 3, 40, 56)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale


def test_decoder_infer_under_bf16_autocast_stays_close():
    decoder = he_init(AdaINDecoder(), seed=1, image_output=True)
    features = torch.randn(1, 512, 4, 4).relu()
    expected = decoder(features)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = decoder.infer(features).float()
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()
