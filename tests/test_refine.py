"""style_refine: gradient steps on the paper's loss with respect to the AdaIN targets, per content image."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adain_nodes import pipeline, refine
from adain_nodes.core.layers import ADAIN_LAYER, STYLE_LAYERS
from adain_nodes.core.stats import adain, mean_std
from adain_nodes.errors import AdaINInputError
from adain_nodes.host.paths import DEFAULT_DECODER
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from conftest import random_image, shared_path
from test_boost import skip_decoder  # noqa: F401  (fixture)
from test_real_weights import load_image

CPU = StandaloneRuntime(torch.device("cpu"))


def _nchw(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 3, 1, 2).contiguous()


def _paper_loss(encoder, decoder, content: torch.Tensor, style: torch.Tensor, stats: pipeline.AdaINStyle) -> float:
    """The loss refine descends, recomputed here from its definition: decode the content AdaIN'd to ``stats`` at
    every level the decoder takes; content loss at the AdaIN layer against the content AdaIN'd to the style's own
    statistics, plus the paper's weight x the mean/std style loss at relu1_1..relu4_1 against the style."""
    with torch.no_grad():
        vgg = encoder.network
        own = dict(zip(STYLE_LAYERS, vgg.encode(content, STYLE_LAYERS)))
        aims = [mean_std(f) for f in vgg.encode(style, STYLE_LAYERS)]
        levels = decoder.network.levels
        output = decoder.network(*(adain(own[n], *(t[:1] for t in stats.levels[n])) for n in levels)).clamp(0, 1)
        got = vgg.encode(output, STYLE_LAYERS)
        content_loss = F.mse_loss(got[STYLE_LAYERS.index(ADAIN_LAYER)], adain(own[ADAIN_LAYER], *aims[-1]))
        style_loss = sum(F.mse_loss(m, am) + F.mse_loss(s, a_s)
                         for (m, s), (am, a_s) in zip((mean_std(f) for f in got), aims))
    return float(content_loss + refine.STYLE_WEIGHT * style_loss)


def test_refine_descends_the_papers_loss_and_zero_steps_changes_nothing(encoder, skip_decoder):  # noqa: F811
    content, style = _nchw(random_image(1, 48, 56, seed=3)), _nchw(random_image(1, 40, 40, seed=4))
    stats = pipeline.style_statistics(encoder, style, CPU)
    assert pipeline.refined_style(encoder, skip_decoder, content, stats, 0, CPU) is stats
    losses = [_paper_loss(encoder, skip_decoder, content, style,
                          pipeline.refined_style(encoder, skip_decoder, content, stats, steps, CPU))
              for steps in (0, 1, 4)]
    assert losses[2] < losses[1] < losses[0]
    refined = pipeline.refined_style(encoder, skip_decoder, content, stats, 2, CPU)
    for name in STYLE_LAYERS:  # every level the decoder takes moves; the stats stay [1, C] and finite
        changed = name in skip_decoder.network.levels
        assert (not torch.equal(refined.levels[name][1], stats.levels[name][1])) == changed
        assert refined.levels[name][0].shape == stats.levels[name][0].shape
        assert all(torch.isfinite(t).all() for t in refined.levels[name])


def test_each_content_image_gets_its_own_targets_and_alpha_applies_after(encoder, skip_decoder):  # noqa: F811
    contents, style = _nchw(random_image(2, 40, 40, seed=9)), _nchw(random_image(1, 32, 32, seed=10))
    stats = pipeline.style_statistics(encoder, style, CPU)
    both = pipeline.refined_style(encoder, skip_decoder, contents, stats, 1, CPU)
    alone = pipeline.refined_style(encoder, skip_decoder, contents[1:], stats, 1, CPU)
    assert both.count == 2 and not torch.equal(both.std[0], both.std[1])
    torch.testing.assert_close(both.std[1:], alone.std, rtol=1e-4, atol=1e-5)
    half = pipeline.stylize(encoder, skip_decoder, contents, style, CPU, 0.5, refine=1)
    expected = pipeline.decode(skip_decoder, pipeline.blend(
        pipeline.encode(encoder, contents, CPU, levels=skip_decoder.network.levels), both, 0.5), CPU)
    torch.testing.assert_close(half, expected, rtol=1e-4, atol=1e-4)


def test_refine_runs_where_the_host_runs_everything_in_inference_mode(encoder, skip_decoder):  # noqa: F811
    """ComfyUI executes nodes under torch.inference_mode, and models loaded there hold inference tensors; the
    gradient steps still run and give what they give outside it."""
    content, style = random_image(1, 32, 40, seed=5), random_image(1, 32, 32, seed=6)
    node = N["AdaINStyleTransfer"]()
    outside = node.transfer(encoder, skip_decoder, content, style, 1.0, style_refine=2)[0]
    with torch.inference_mode():
        inside = node.transfer(encoder, skip_decoder, content.clone(), style.clone(), 1.0, style_refine=2)[0]
    torch.testing.assert_close(inside, outside)
    plain = node.transfer(encoder, skip_decoder, content, style, 1.0)[0]
    assert not torch.allclose(plain, outside)


def test_the_node_refuses_bad_step_counts(encoder, skip_decoder):  # noqa: F811
    content, style = random_image(1, 32, 32, seed=5), random_image(1, 32, 32, seed=6)
    assert "style_refine" in N["AdaINStyleTransfer"].INPUT_TYPES()["optional"]
    for bad in (-1, refine.MAX_STEPS + 1, 1.5, True):
        with pytest.raises(AdaINInputError, match="style_refine"):
            N["AdaINStyleTransfer"]().transfer(encoder, skip_decoder, content, style, 1.0, style_refine=bad)


def test_a_large_image_is_refined_on_a_smaller_copy(encoder, skip_decoder, monkeypatch):  # noqa: F811
    """Above refine.MAX_PIXELS the targets come from a copy scaled down to it: the same targets as refining that
    copy directly, and the image itself still decodes at full size."""
    monkeypatch.setattr(refine, "MAX_PIXELS", 32 * 32)
    content, style = _nchw(random_image(1, 64, 64, seed=11)), _nchw(random_image(1, 32, 32, seed=12))
    stats = pipeline.style_statistics(encoder, style, CPU)
    large = pipeline.refined_style(encoder, skip_decoder, content, stats, 1, CPU)
    small = F.interpolate(content, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    direct = pipeline.refined_style(encoder, skip_decoder, small, stats, 1, CPU)
    torch.testing.assert_close(large.std, direct.std)
    assert pipeline.stylize(encoder, skip_decoder, content, style, CPU, 1.0, refine=1).shape[-2:] == (64, 64)


class _SmallDevice(StandaloneRuntime):
    """A device with room for ``fits`` bytes of working memory: asking for more is an out-of-memory error, as a
    GPU's allocator raises it."""

    def __init__(self, fits: int) -> None:
        super().__init__(torch.device("cpu"))
        self.fits, self.asked = fits, []

    def load(self, model, working_bytes: int) -> None:
        self.asked.append(working_bytes)
        if working_bytes > self.fits:
            raise torch.OutOfMemoryError(f"tried to allocate {working_bytes} bytes")
        super().load(model, working_bytes)


def test_out_of_memory_halves_the_refined_copy_until_it_fits(encoder, skip_decoder, monkeypatch, caplog):  # noqa: F811
    """On out-of-memory the copy refined is halved (ComfyUI's upscale node halves its tiles so), and the targets
    are those of refining the copy that fitted; below refine.MIN_PIXELS the error reaches the user."""
    content, style = _nchw(random_image(1, 128, 192, seed=13)), _nchw(random_image(1, 32, 32, seed=14))
    stats = pipeline.style_statistics(encoder, style, CPU)
    device = _SmallDevice(fits=7000 * refine.BYTES_PER_PIXEL)
    with caplog.at_level("WARNING"):
        fitted = pipeline.refined_style(encoder, skip_decoder, content, stats, 1, device)
    # whole (24576 px), half (91 x 136, padded to the grid: 96 x 136), a quarter (64 x 96) fits both networks
    assert [b // refine.BYTES_PER_PIXEL for b in device.asked] == [128 * 192, 96 * 136, 64 * 96, 64 * 96]
    assert caplog.text.count("out of memory") == 2
    monkeypatch.setattr(refine, "MAX_PIXELS", 64 * 96)
    torch.testing.assert_close(fitted.std, pipeline.refined_style(encoder, skip_decoder, content, stats, 1, CPU).std)
    monkeypatch.setattr(refine, "MIN_PIXELS", 64 * 96)
    with pytest.raises(torch.OutOfMemoryError):
        pipeline.refined_style(encoder, skip_decoder, content, stats, 1, _SmallDevice(fits=0))


def test_the_modular_graph_refines_as_the_one_node_transfer(encoder, skip_decoder):  # noqa: F811
    """Encode, Stats, Refine Style, Blend (alpha), Decode equals AdaIN Style Transfer's style_refine; the node
    refuses a style from another encoder and a bad step count."""
    content, style = random_image(2, 40, 48, seed=7), random_image(1, 32, 32, seed=8)
    features = N["AdaINEncode"]().encode(encoder, content, decoder=skip_decoder)[0]
    stats = N["AdaINStyleStats"]().compute(encoder, style)[0]
    refined = N["AdaINRefineStyle"]().refine(encoder, skip_decoder, stats, content, 1)[0]
    assert refined.count == 2 and set(refined.levels) == set(stats.levels)  # a whole style, e.g. to save as a preset
    for alpha in (1.0, 0.6):
        graph = N["AdaINDecode"]().decode(skip_decoder, N["AdaINBlend"]().blend(features, refined, alpha)[0])[0]
        one_node = N["AdaINStyleTransfer"]().transfer(encoder, skip_decoder, content, style, alpha, style_refine=1)[0]
        torch.testing.assert_close(graph, one_node)
    other = pipeline.AdaINStyle(stats.levels, "another-encoder", "other.safetensors")
    with pytest.raises(AdaINInputError, match="same encoder"):
        N["AdaINRefineStyle"]().refine(encoder, skip_decoder, other, content, 1)
    with pytest.raises(AdaINInputError, match="style_refine"):
        N["AdaINRefineStyle"]().refine(encoder, skip_decoder, stats, content, refine.MAX_STEPS + 1)
    foreign = {name: (m[:, :-8], s[:, :-8]) for name, (m, s) in stats.levels.items()}  # a preset from elsewhere
    with pytest.raises(AdaINInputError, match="channels"):
        N["AdaINRefineStyle"]().refine(encoder, skip_decoder, pipeline.AdaINStyle(foreign, stats.encoder_id, "x"),
                                       content, 1)


def test_refine_brings_the_default_decoder_nearer_the_style_and_the_content():
    """On real pairs with the real encoder and the shipped default decoder, one step lowers the paper's style loss
    (geometric mean over four photos x two paintings) and keeps the content loss within reach of one transfer's."""
    weights = shared_path("weights", "vgg19_normalised_relu4_1.safetensors").parent
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADAIN_MODELS_DIR", str(weights))
        encoder = N["AdaINEncoderLoader"]().load("vgg19_normalised_relu4_1.safetensors")[0]
        decoder = N["AdaINDecoderLoader"]().load(DEFAULT_DECODER)[0]
    log_ratios = []
    for photo in ("skimage_chelsea.png", "skimage_astronaut.png", "tubingen.jpg", "lenna.jpg"):
        content = _nchw(load_image(shared_path("images", "content", photo)))
        for painting in ("starry_night.jpg", "the_scream.jpg"):
            style = _nchw(load_image(shared_path("images", "style", painting)))
            stats = pipeline.style_statistics(encoder, style, CPU)
            padded = pipeline.pad_for_encoder(content)
            plain, refined = (_paper_loss(encoder, decoder, padded, style, s) for s in
                              (stats, pipeline.refined_style(encoder, decoder, content, stats, 1, CPU)))
            log_ratios.append(math.log(refined / plain))
    assert math.exp(sum(log_ratios) / len(log_ratios)) < 0.9
