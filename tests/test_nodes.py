"""Every node through its public function: outputs, masks, batches, sizes, presets and error cases."""
from __future__ import annotations

import math

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.core.stats import EPS, masked_mean_std, mean_std
from adain_nodes.errors import AdaINInputError, WeightFileError
from adain_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from conftest import random_image

N = NODE_CLASS_MAPPINGS


def assert_has_style(result, style, weight=None):
    """Measured statistics of ``result`` (AdaINFeatures) equal the style's. Channels that are constant
    in the content (dead ReLUs of a small random network) cannot take a std, so only live ones count."""
    stats = mean_std if weight is None else (lambda f, eps=EPS: masked_mean_std(f, weight, eps))
    m, s = stats(result.features)
    content = result.content[result.layer]
    content_std, content_raw_std = stats(content)[1], stats(content, eps=0.0)[1]
    live = content_std > 0.05
    assert live.sum() > 50
    # AdaIN scales by style_std / content_std (epsilon inside); measuring adds the epsilon again
    expected = ((style.std * content_raw_std / content_std) ** 2 + EPS).sqrt()
    assert torch.allclose(m, style.mean.expand_as(m), atol=1e-4)
    assert torch.allclose(s[live], expected[live], rtol=1e-4, atol=1e-5)
PUBLIC_IDS = {"AdaINEncoderLoader", "AdaINDecoderLoader", "AdaINEncode", "AdaINStyleStats", "AdaINBlend",
              "AdaINMixStyles", "AdaINDecode", "AdaINStyleTransfer", "AdaINMatchColor", "AdaINSaveStyle",
              "AdaINLoadStyle", "AdaINImage", "AdaINLatent", "AdaINVideoStyleTransfer", "AdaINBoostStyle",
              "AdaINRefineStyle"}


def test_public_node_ids_and_metadata(model_dir):
    assert set(N) == PUBLIC_IDS == set(NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in N.items():
        assert cls.CATEGORY.startswith("style_transfer")
        assert len(cls.DESCRIPTION) > 30, name
        assert callable(getattr(cls(), cls.FUNCTION))
        spec = cls.INPUT_TYPES()
        for group in spec.values():
            for input_name, (kind, *options) in group.items():
                assert options and options[0].get("tooltip"), f"{name}.{input_name} has no tooltip"
        if cls.RETURN_TYPES:
            assert len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES), name


def test_loader_lists_files_from_models_dir(model_dir):
    choices = N["AdaINEncoderLoader"].INPUT_TYPES()["required"]["encoder_name"][0]
    assert "vgg19_normalised_relu4_1.safetensors" in choices and "vgg_normalised.pth" in choices
    assert choices[0].startswith("vgg")  # the likely encoder is the default


def test_loader_unknown_and_escaping_names(model_dir):
    with pytest.raises(AdaINInputError, match="not found"):
        N["AdaINEncoderLoader"]().load("missing.safetensors")
    for bad in ("../secret.pth", "/etc/passwd", "C:\\weights.pth", "a/../../b.pth"):
        with pytest.raises(AdaINInputError, match="inside the folder"):
            N["AdaINDecoderLoader"]().load(bad)


def test_loader_refuses_encoder_file_as_decoder(model_dir):
    with pytest.raises(WeightFileError, match="missing keys"):
        N["AdaINDecoderLoader"]().load("vgg19_normalised_relu4_1.safetensors")


def test_pth_and_safetensors_encoders_share_identity(model_dir):
    a = N["AdaINEncoderLoader"]().load("vgg_normalised.pth")[0]
    b = N["AdaINEncoderLoader"]().load("vgg19_normalised_relu4_1.safetensors")[0]
    assert a.identity == b.identity  # conftest saves the same random VGG in both files


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (5, 300), (64, 48)])
def test_decode_returns_encoded_size(encoder, decoder, size):
    image = random_image(2, *size)
    features = N["AdaINEncode"]().encode(encoder, image)[0]
    out = N["AdaINDecode"]().decode(decoder, features)[0]
    assert out.shape == (2, *size, 3)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_grey_and_alpha_images(encoder, decoder, channels):
    image = random_image(1, 24, 40, channels)
    out = N["AdaINStyleTransfer"]().transfer(encoder, decoder, image, random_image(1, 32, 32, seed=3), 1.0)[0]
    assert out.shape == (1, 24, 40, 3)


def test_grey_input_equals_repeated_rgb(encoder):
    grey = random_image(1, 32, 32, 1)
    a = N["AdaINEncode"]().encode(encoder, grey)[0]
    b = N["AdaINEncode"]().encode(encoder, grey.expand(-1, -1, -1, 3))[0]
    assert torch.equal(a.features, b.features)


def test_blend_alpha_endpoints_and_style_statistics(encoder):
    features = N["AdaINEncode"]().encode(encoder, random_image(1, 48, 48))[0]
    style = N["AdaINStyleStats"]().compute(encoder, random_image(1, 40, 56, seed=7))[0]
    full = N["AdaINBlend"]().blend(features, style, 1.0)[0]
    assert_has_style(full, style)
    none = N["AdaINBlend"]().blend(features, style, 0.0)[0]
    assert torch.allclose(none.features, features.features, atol=1e-6)
    half = N["AdaINBlend"]().blend(features, style, 0.5)[0]
    assert torch.allclose(half.features, (full.features + none.features) / 2, atol=1e-5)


def test_blend_in_place_reuses_the_content_tensors_and_gives_the_same_levels(encoder):
    """What the one-node transfer and video do: the targets overwrite the encoded levels, nothing is copied."""
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.models.networks import SkipDecoder
    image = random_image(2, 40, 48).permute(0, 3, 1, 2)  # the pipeline's layout
    features = pipeline.encode(encoder, image, StandaloneRuntime(torch.device("cpu")), levels=SkipDecoder.levels)
    style = N["AdaINStyleStats"]().compute(encoder, random_image(1, 40, 56, seed=7))[0]
    copy = pipeline.AdaINFeatures({name: t.clone() for name, t in features.content.items()}, features.image_size,
                                  features.encoder_id, features.encoder_name)
    expected = pipeline.blend(copy, style, 0.6).levels
    inputs = {name: t.data_ptr() for name, t in features.content.items()}
    styled = pipeline.blend(features, style, 0.6, in_place=True)
    assert not styled.weighted and {name: t.data_ptr() for name, t in styled.levels.items()} == inputs
    for name, level in styled.levels.items():
        assert torch.allclose(level, expected[name], atol=1e-5), name
    with pytest.raises(ValueError, match="first blend, without a mask"):
        pipeline.blend(copy, style, 1.0, torch.ones(1, 40, 48), in_place=True)
    with pytest.raises(ValueError, match="first blend, without a mask"):
        pipeline.blend(pipeline.blend(copy, style), style, 1.0, in_place=True)


def test_style_batches_broadcast_pair_and_refuse(encoder):
    contents = N["AdaINEncode"]().encode(encoder, random_image(3, 32, 32))[0]
    one = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=1))[0]
    three = N["AdaINStyleStats"]().compute(encoder, random_image(3, 32, 32, seed=2))[0]
    two = N["AdaINStyleStats"]().compute(encoder, random_image(2, 32, 32, seed=3))[0]
    assert_has_style(N["AdaINBlend"]().blend(contents, one, 1.0)[0], one)
    assert_has_style(N["AdaINBlend"]().blend(contents, three, 1.0)[0], three)
    with pytest.raises(AdaINInputError, match="batch of 2 but the content has 3"):
        N["AdaINBlend"]().blend(contents, two, 1.0)


def test_average_batch_gives_one_style(encoder):
    style = N["AdaINStyleStats"]().compute(encoder, random_image(3, 32, 32, seed=2), average_batch=True)[0]
    each = N["AdaINStyleStats"]().compute(encoder, random_image(3, 32, 32, seed=2))[0]
    assert style.count == 1 and torch.allclose(style.mean[0], each.mean.mean(0))


def test_complementary_masks_give_two_region_transfer(encoder):
    """Two chained blends with complementary binary masks = the paper's spatial control."""
    features = N["AdaINEncode"]().encode(encoder, random_image(1, 64, 64))[0]
    style_a = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=11))[0]
    style_b = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=12))[0]
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0
    left = N["AdaINBlend"]().blend(features, style_a, 1.0, mask)[0]
    both = N["AdaINBlend"]().blend(left, style_b, 1.0, 1.0 - mask)[0]
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4] = 1.0
    for weight, style in ((region, style_a), (1 - region, style_b)):
        assert_has_style(both, style, weight)
    # statistics always refer to the original content, so chaining order does not matter
    first = N["AdaINBlend"]().blend(features, style_b, 1.0, 1.0 - mask)[0]
    other = N["AdaINBlend"]().blend(first, style_a, 1.0, mask)[0]
    assert torch.allclose(both.features, other.features, atol=1e-5)


def test_mask_zero_keeps_features_and_mask_one_equals_no_mask(encoder):
    features = N["AdaINEncode"]().encode(encoder, random_image(2, 40, 40))[0]
    style = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=5))[0]
    kept = N["AdaINBlend"]().blend(features, style, 1.0, torch.zeros(1, 10, 10))[0]
    assert torch.equal(kept.features, features.features)
    masked = N["AdaINBlend"]().blend(features, style, 0.7, torch.ones(2, 80, 80))[0]
    plain = N["AdaINBlend"]().blend(features, style, 0.7)[0]
    assert torch.allclose(masked.features, plain.features, atol=1e-4)
    with pytest.raises(AdaINInputError, match="mask has a batch of 3"):
        N["AdaINBlend"]().blend(features, style, 1.0, torch.ones(3, 8, 8))


def test_style_mask_restricts_statistics(encoder):
    image = torch.cat([random_image(1, 32, 32, seed=1), random_image(1, 32, 32, seed=2)], dim=2)  # two halves
    mask = torch.zeros(1, 32, 64)
    mask[:, :, :32] = 1
    masked = N["AdaINStyleStats"]().compute(encoder, image, mask=mask)[0]
    whole = N["AdaINStyleStats"]().compute(encoder, image)[0]
    assert not torch.allclose(masked.mean, whole.mean, atol=1e-3)


def test_mix_styles_weights_normalised(encoder):
    a = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=1))[0]
    b = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=2))[0]
    c = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32, seed=3))[0]
    mixed = N["AdaINMixStyles"]().mix(a, 0.2, b, 0.2, c, 0.4)[0]
    assert torch.allclose(mixed.mean, 0.25 * a.mean + 0.25 * b.mean + 0.5 * c.mean, atol=1e-6)
    only_a = N["AdaINMixStyles"]().mix(a, 1.0, b, 0.0)[0]
    assert torch.allclose(only_a.std, a.std)
    with pytest.raises(AdaINInputError, match="at least one style weight"):
        N["AdaINMixStyles"]().mix(a, 0.0, b, 0.0)
    with pytest.raises(AdaINInputError, match="weight_2"):
        N["AdaINMixStyles"]().mix(a, 1.0, b, math.nan)


def test_statistics_from_another_encoder_are_refused(encoder, model_dir):
    from adain_nodes.models.loaded import LoadedModel
    from adain_nodes.models.networks import VGGEncoder
    other = LoadedModel(VGGEncoder().eval(), "0123456789abcdef", "other.safetensors")
    features = N["AdaINEncode"]().encode(encoder, random_image(1, 32, 32))[0]
    style = N["AdaINStyleStats"]().compute(other, random_image(1, 32, 32))[0]
    with pytest.raises(AdaINInputError, match="use the same encoder"):
        N["AdaINBlend"]().blend(features, style, 1.0)
    mine = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32))[0]
    with pytest.raises(AdaINInputError, match="use the same encoder"):
        N["AdaINMixStyles"]().mix(mine, 1.0, style, 1.0)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan])
def test_alpha_out_of_range(encoder, alpha):
    features = N["AdaINEncode"]().encode(encoder, random_image(1, 32, 32))[0]
    style = N["AdaINStyleStats"]().compute(encoder, random_image(1, 32, 32))[0]
    with pytest.raises(AdaINInputError, match="alpha"):
        N["AdaINBlend"]().blend(features, style, alpha)


def test_bad_images_are_named(encoder):
    nan = random_image(1, 16, 16)
    nan[0, 3, 3, 0] = math.nan
    with pytest.raises(AdaINInputError, match="^image: .*NaN"):
        N["AdaINEncode"]().encode(encoder, nan)
    with pytest.raises(AdaINInputError, match="empty"):
        N["AdaINEncode"]().encode(encoder, torch.zeros(0, 16, 16, 3))
    with pytest.raises(AdaINInputError, match="channels"):
        N["AdaINEncode"]().encode(encoder, torch.zeros(1, 16, 16, 5))


def test_out_of_range_values_are_clipped_not_propagated(encoder, decoder):
    image = random_image(1, 32, 32) * 3 - 1
    out = N["AdaINStyleTransfer"]().transfer(encoder, decoder, image, random_image(1, 32, 32), 1.0)[0]
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_preserve_color_modes(encoder, decoder):
    content, style = random_image(2, 32, 48, seed=1), random_image(1, 40, 40, seed=2)
    node = N["AdaINStyleTransfer"]()
    outputs = {mode: node.transfer(encoder, decoder, content, style, 1.0, mode)[0] for mode in pipeline.COLOR_MODES}
    assert all(o.shape == (2, 32, 48, 3) for o in outputs.values())
    lum = outputs["luminance only"]
    # luminance only keeps the content's chroma: R-G and G-B differences are unchanged where not clipped
    inside = ((lum > 0.01) & (lum < 0.99)).all(dim=-1)
    diff_out = (lum[..., 0] - lum[..., 1])[inside]
    diff_in = (content[..., 0] - content[..., 1])[inside]
    assert torch.allclose(diff_out, diff_in, atol=1e-5)
    with pytest.raises(AdaINInputError, match="preserve_color"):
        node.transfer(encoder, decoder, content, style, 1.0, "sepia")


def test_match_color_node(model_dir):
    image, reference = random_image(2, 32, 32, seed=1), random_image(1, 24, 40, seed=2) * 0.5
    out = N["AdaINMatchColor"]().match(image, reference)[0]
    flat_out, flat_ref = out[0].reshape(-1, 3).double(), reference[0].reshape(-1, 3).double()
    assert torch.allclose(flat_out.mean(0), flat_ref.mean(0), atol=1e-4)
    assert torch.allclose(torch.cov(flat_out.T), torch.cov(flat_ref.T), atol=1e-4)


def test_save_and_load_style_preset(encoder, model_dir):
    style = N["AdaINStyleStats"]().compute(encoder, random_image(2, 32, 32))[0]
    result = N["AdaINSaveStyle"]().save(style, "moods/calm")
    saved = result["ui"]["text"][0]
    assert saved.endswith("calm.safetensors") and result["result"] == (saved,)  # the path also goes out as STRING
    assert "moods/calm.safetensors" in N["AdaINLoadStyle"].INPUT_TYPES()["required"]["preset"][0]
    loaded = N["AdaINLoadStyle"]().load("moods/calm.safetensors")[0]
    assert torch.equal(loaded.mean, style.mean) and torch.equal(loaded.std, style.std)
    assert (loaded.encoder_id, loaded.layer) == (style.encoder_id, style.layer)
    with pytest.raises(AdaINInputError, match="exists"):
        N["AdaINSaveStyle"]().save(style, "moods/calm", overwrite=False)
    with pytest.raises(AdaINInputError, match="inside the folder"):
        N["AdaINSaveStyle"]().save(style, "../escape")
    for no_file_name in ("0\\", "moods/", "moods/.hidden", "   "):  # found by the fuzzer: '0\\' saved '0/.safetensors'
        with pytest.raises(AdaINInputError, match="file name"):
            N["AdaINSaveStyle"]().save(style, no_file_name)


def test_corrupt_preset_is_refused(encoder, model_dir, tmp_path):
    styles = tmp_path / "styles"
    styles.mkdir(exist_ok=True)
    (styles / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightFileError, match="broken.safetensors"):
        N["AdaINLoadStyle"]().load("broken.safetensors")


def test_single_pixel_luminance_transfer_is_finite(encoder, decoder):
    """Found by the fuzzer: a 1x1 image's unbiased std is NaN, which poisoned luminance-only mode."""
    pixel = torch.full((1, 1, 1, 3), 0.97)
    out = N["AdaINStyleTransfer"]().transfer(encoder, decoder, pixel, pixel, 0.0, "luminance only")[0]
    assert out.shape == (1, 1, 1, 3) and torch.isfinite(out).all()
