"""With the real pretrained encoder of ../shared and each decoder the pack ships: the stylization really stylizes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from adain_nodes import pipeline
from adain_nodes.core.stats import mean_std
from adain_nodes.host.paths import DEFAULT_DECODER
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from conftest import shared_path

CPU = torch.device("cpu")


def load_image(path, size=128):
    image = Image.open(path).convert("RGB")
    image.thumbnail((size, size))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


def style_distance(encoder, image, style):
    """Mean/std style loss at relu1_1..relu4_1, as in the paper (Fig. 3)."""
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    with torch.no_grad():
        a = encoder.network.encode(image.permute(0, 3, 1, 2), layers)
        b = encoder.network.encode(style.permute(0, 3, 1, 2), layers)
    loss = 0.0
    for fa, fb in zip(a, b):
        (ma, sa), (mb, sb) = mean_std(fa), mean_std(fb)
        loss += float(((ma - mb) ** 2).mean() + ((sa - sb) ** 2).mean())
    return loss


# The decoders the pack ships in weights/: the default skip decoder and the relu4_1 one older workflows name.
SHIPPED_DECODERS = (DEFAULT_DECODER, "adain_decoder_relu4_1.safetensors")


@pytest.fixture(scope="module", params=SHIPPED_DECODERS)
def real_models(request):
    weights = shared_path("weights", "vgg19_normalised_relu4_1.safetensors").parent
    with pytest.MonkeyPatch.context() as env:  # loaded once; the folder setting does not outlive the loading
        env.setenv("ADAIN_MODELS_DIR", str(weights))
        encoder = N["AdaINEncoderLoader"]().load("vgg19_normalised_relu4_1.safetensors")[0]
        decoder = N["AdaINDecoderLoader"]().load(request.param)[0]
    return encoder, decoder


def test_real_stylization_moves_towards_the_style(real_models):
    encoder, decoder = real_models
    content = load_image(shared_path("images", "content", "skimage_chelsea.png"))
    style = load_image(shared_path("images", "style", "starry_night.jpg"))
    node = N["AdaINStyleTransfer"]()
    out = node.transfer(encoder, decoder, content, style, 1.0)[0]
    half = node.transfer(encoder, decoder, content, style, 0.3)[0]
    assert out.shape == content.shape
    before, after, partial = (style_distance(encoder, x, style) for x in (content, out, half))
    assert after < before / 2, (before, after)
    assert after < partial < before  # alpha trades content for style


@pytest.mark.parametrize("decoder_name", SHIPPED_DECODERS)
def test_bf16_output_stays_within_45_db_of_fp32(decoder_name):
    """What lets ``auto`` pick bf16 (bench/bench_inference.py measures it up to 2048 px): a real photo and
    painting, real weights, bf16 against fp32 output."""
    weights = shared_path("weights", "vgg19_normalised_relu4_1.safetensors").parent
    content = load_image(shared_path("images", "content", "avril.jpg"), 192).permute(0, 3, 1, 2)
    style = load_image(shared_path("images", "style", "starry_night.jpg"), 192).permute(0, 3, 1, 2)
    outputs = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADAIN_MODELS_DIR", str(weights))
        for precision in ("fp32", "bf16"):
            encoder = N["AdaINEncoderLoader"]().load("vgg19_normalised_relu4_1.safetensors", precision)[0]
            decoder = N["AdaINDecoderLoader"]().load(decoder_name, precision)[0]
            outputs[precision] = pipeline.stylize(encoder, decoder, content, style, StandaloneRuntime(CPU))
    mse = float(((outputs["fp32"] - outputs["bf16"]) ** 2).mean())
    assert 0 < mse and 10 * math.log10(1 / mse) >= 45


def test_spatial_control_with_real_mask(real_models):
    encoder, decoder = real_models
    content = load_image(shared_path("images", "content", "blonde_girl.jpg"), 96)
    mask_image = Image.open(shared_path("images", "mask", "mask.png")).convert("L").resize(content.shape[2:0:-1])
    mask = torch.from_numpy(np.asarray(mask_image, dtype=np.float32) / 255.0)[None]
    a = N["AdaINStyleStats"]().compute(encoder, load_image(shared_path("images", "style", "wave.jpg"), 96))[0]
    b = N["AdaINStyleStats"]().compute(encoder, load_image(shared_path("images", "style", "the_scream.jpg"), 96))[0]
    features = N["AdaINEncode"]().encode(encoder, content, decoder=decoder)[0]
    both = N["AdaINBlend"]().blend(N["AdaINBlend"]().blend(features, a, 1.0, mask)[0], b, 1.0, 1.0 - mask)[0]
    out = N["AdaINDecode"]().decode(decoder, both)[0]
    assert out.shape == content.shape and torch.isfinite(out).all()
    only_a = N["AdaINDecode"]().decode(decoder, N["AdaINBlend"]().blend(features, a, 1.0)[0])[0]
    inside = mask[0] > 0.99
    outside = mask[0] < 0.01
    # inside the mask the picture is (nearly) the style-a picture, outside it is not
    assert (out[0][inside] - only_a[0][inside]).abs().mean() < 0.5 * (out[0][outside] - only_a[0][outside]).abs().mean()
