"""Every node fuzzed with hypothesis: each input gives a valid result or a clear error naming the input.

Valid results are finite (never a NaN image) and images stay in 0..1; errors are AdaINInputError or
WeightFileError whose message names the offending input. Both decoder kinds are drawn where a decoder is
used: the skip decoder (the default) and the relu4_1 decoder. Tiny random-weight models and images of at
most 40 px keep the whole file well under a minute on two CPU cores.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from adain_nodes import pipeline
from adain_nodes.errors import AdaINInputError, WeightFileError
from adain_nodes.models.networks import VGGEncoder
from adain_nodes.models.weights import save_safetensors
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from conftest import he_init, random_decoder, random_image, random_skip_decoder

FUZZ = settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(FUZZ, max_examples=80)
NET_SIDE = 24  # images that go through the networks: padded to at least 16 px, cost grows with the area
# The skip decoder first: it is the default, and hypothesis shrinks towards the first choice.
DECODER_KINDS = st.sampled_from(["skip", "relu4_1"])


class Models:
    """The module's models and precomputed values (a short repr keeps hypothesis reports readable)."""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return "<fuzz models>"


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    """Encoder, a second encoder, both kinds of decoder, and precomputed features (for each decoder kind) and
    styles, loaded through the nodes."""
    root = tmp_path_factory.mktemp("fuzz")
    models = root / "models"
    models.mkdir()
    save_safetensors(he_init(VGGEncoder(), 0).state_dict(), models / "enc.safetensors", {"kind": "encoder"})
    save_safetensors(he_init(VGGEncoder(), 5).state_dict(), models / "other_enc.safetensors", {"kind": "encoder"})
    save_safetensors(random_decoder().state_dict(), models / "dec.safetensors", {"kind": "decoder"})
    save_safetensors(random_skip_decoder().state_dict(), models / "skip.safetensors", {"kind": "decoder"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADAIN_MODELS_DIR", str(models))
        mp.setenv("ADAIN_STYLES_DIR", str(root / "styles"))
        mp.setenv("ADAIN_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/no-network-in-tests")
        enc = N["AdaINEncoderLoader"]().load("enc.safetensors")[0]
        other = N["AdaINEncoderLoader"]().load("other_enc.safetensors")[0]
        decoders = {"relu4_1": N["AdaINDecoderLoader"]().load("dec.safetensors")[0],
                    "skip": N["AdaINDecoderLoader"]().load("skip.safetensors")[0]}
        features = {kind: {b: N["AdaINEncode"]().encode(enc, random_image(b, 12, 20, seed=b), decoder=decoder)[0]
                           for b in (1, 2, 3)} for kind, decoder in decoders.items()}
        styles = {k: N["AdaINStyleStats"]().compute(enc, random_image(k, 16, 16, seed=10 + k))[0] for k in (1, 2, 3)}
        foreign = N["AdaINStyleStats"]().compute(other, random_image(1, 16, 16, seed=9))[0]
        yield Models(root=root, models=models, styles_dir=root / "styles", enc=enc, other=other, decoders=decoders,
                     features=features, styles=styles, foreign=foreign)


def clear(call, *names):
    """The node's result, or None after a clear error whose message names one of ``names``."""
    try:
        result = call()
    except (AdaINInputError, WeightFileError) as exc:
        assert any(name in str(exc) for name in names), f"error does not name {names}: {exc}"
        event("clear error")
        return None
    event("valid result")
    return result


def assert_image(image: torch.Tensor, batch: int, height: int, width: int) -> None:
    assert image.shape == (batch, height, width, 3)
    assert torch.isfinite(image).all(), "NaN or Inf in an output image"
    assert image.min() >= 0 and image.max() <= 1


# --- strategies -------------------------------------------------------------------------------------------

VALUE_KINDS = ["unit", "unit", "unit", "wide", "constant", "nan", "inf", "-inf", "huge"]


@st.composite
def images(draw, max_side: int = NET_SIDE, max_batch: int = 2):
    """Host IMAGE tensors: 1x1 to odd sizes, 1-5 channels (5 is invalid), empty batches, odd values.
    Three in four are usable, so the nodes' results get checked too, not only their errors."""
    usable = draw(st.sampled_from([True, True, True, False]))
    b = draw(st.integers(1, max_batch)) if usable else draw(st.integers(0, max_batch))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    c = draw(st.sampled_from([1, 2, 3, 3, 4] + ([] if usable else [5, 0])))
    kind = draw(st.sampled_from(VALUE_KINDS[:5] if usable else VALUE_KINDS))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float16, torch.float64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    x = torch.rand(b, h, w, c, generator=g, dtype=torch.float64)
    if kind == "wide":
        x = x * 6 - 3
    elif kind == "constant":
        x.fill_(draw(st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0])))
    elif kind == "huge":
        x = x * 1e300  # infinite once converted to float32
    elif kind in ("nan", "inf", "-inf") and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = float(kind)
    return x.to(dtype)


@st.composite
def masks(draw, max_side: int = 40):
    """MASK tensors of other sizes and batch counts, [H, W], [B, H, W], [B, 1, H, W] and invalid layouts."""
    b = draw(st.integers(0, 4))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    layout = draw(st.sampled_from(["bhw", "bhw", "hw", "b1hw", "bhw1", "flat"]))
    shape = {"bhw": (b, h, w), "hw": (h, w), "b1hw": (b, 1, h, w), "bhw1": (b, h, w, 2), "flat": (h,)}[layout]
    kind = draw(st.sampled_from(["unit", "binary", "zeros", "ones", "wide", "nan", "inf"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    x = torch.rand(*shape, generator=g)
    if kind == "binary":
        x = (x > 0.5).float()
    elif kind == "zeros":
        x.zero_()
    elif kind == "ones":
        x.fill_(1.0)
    elif kind == "wide":
        x = x * 4 - 2
    elif kind in ("nan", "inf") and x.numel():
        x.view(-1)[0] = float(kind)
    return x


UNIT_EDGES = [0.0, -0.0, 1.0, 0.5, 1e-12, 1 + 1e-9, -1e-9, 2.0, -1.0, math.inf, -math.inf, math.nan]
alphas = st.one_of(st.floats(0, 1), st.floats(0, 1), st.sampled_from(UNIT_EDGES),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-2, 3), st.booleans(), st.sampled_from([None, "0.5"]))
tile_sizes = st.sampled_from([0, 1024, 64, 65, 63, 1, -64, 16384])
tile_overlaps = st.sampled_from([0, 64, 8, 1024, 1025, -8])


def _is_unit(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1


# --- nodes ------------------------------------------------------------------------------------------------

@FUZZ
@given(image=images(), tile_size=tile_sizes, tile_overlap=tile_overlaps)
def test_encode(m, image, tile_size, tile_overlap):
    out = clear(lambda: N["AdaINEncode"]().encode(m.enc, image, tile_size, tile_overlap)[0],
                "image", "tile_size", "tile_overlap")
    if out is not None:
        b, h, w = image.shape[:3]
        assert out.features.shape[:2] == (b, 512) and out.image_size == (h, w)
        assert torch.isfinite(out.features).all()


@FUZZ
@given(image=images(), mask=st.none() | masks(), average=st.booleans())
def test_style_stats(m, image, mask, average):
    style = clear(lambda: N["AdaINStyleStats"]().compute(m.enc, image, average, mask)[0], "image", "mask")
    if style is not None:
        assert style.count == (1 if average else image.shape[0])
        assert torch.isfinite(style.mean).all() and torch.isfinite(style.std).all() and (style.std > 0).all()


@CHEAP
@given(batch=st.sampled_from([1, 2, 3]), count=st.sampled_from([1, 2, 3]), alpha=alphas,
       mask=st.none() | masks(), foreign=st.sampled_from([False, False, False, True]), kind=DECODER_KINDS,
       pool=st.sampled_from([1, 1, 1, 2, 3, 256, 0, -1, 1.5, True, None, "2"]))
def test_blend(m, batch, count, alpha, mask, foreign, kind, pool):
    style, features = m.foreign if foreign else m.styles[count], m.features[kind][batch]
    out = clear(lambda: N["AdaINBlend"]().blend(features, style, alpha, mask, pool)[0],
                "alpha", "mask", "style", "encoder", "pool_frames")
    if out is not None:
        assert _is_unit(alpha) and not foreign and (pool == 1 or mask is None)
        levels = out.levels
        assert {name: f.shape for name, f in levels.items()} == {name: f.shape for name, f in features.levels.items()}
        assert all(torch.isfinite(f).all() for f in levels.values())


weights = st.one_of(st.floats(0, 2), st.floats(0, 2), st.sampled_from([0.0, 1.0, 1e-30, 1e308, -0.1, math.inf,
                                                                        math.nan]),
                    st.floats(allow_nan=True, allow_infinity=True))
STYLE_PICKS = ["1", "1", "2", "3", "foreign"]


@CHEAP
@given(required=st.lists(st.sampled_from(STYLE_PICKS), min_size=2, max_size=2),
       optional=st.lists(st.sampled_from(STYLE_PICKS + [None, None]), min_size=2, max_size=2),
       ws=st.lists(weights, min_size=4, max_size=4))
def test_mix_styles(m, required, optional, ws):
    table = {None: None, "foreign": m.foreign, **{k: m.styles[int(k)] for k in ("1", "2", "3")}}
    styles = [table[p] for p in required + optional]  # style_1 and style_2 are required sockets
    args = [x for pair in zip(styles, ws) for x in pair]
    connected = [i for i, s in enumerate(styles, 1) if s is not None]
    bad = [i for i in connected if not (math.isfinite(ws[i - 1]) and ws[i - 1] >= 0)]
    out = clear(lambda: N["AdaINMixStyles"]().mix(*args)[0], "weight_", "style", "encoder")
    if bad:
        assert out is None  # the error must name the connected weight that is wrong, not its list position
        with pytest.raises(AdaINInputError, match=f"weight_{bad[0]} "):
            N["AdaINMixStyles"]().mix(*args)
    if out is not None:
        assert torch.isfinite(out.mean).all() and torch.isfinite(out.std).all() and (out.std > 0).all()


@FUZZ
@given(image=images(), alpha=st.sampled_from([0.0, 0.3, 1.0]), mask=st.none() | masks(),
       tile_size=tile_sizes, tile_overlap=tile_overlaps, foreign=st.booleans(), kind=DECODER_KINDS,
       connected=st.sampled_from([True, True, True, False]))
def test_decode(m, image, alpha, mask, tile_size, tile_overlap, foreign, kind, connected):
    """Decode what Encode and Blend give (including features of another encoder: no identity on decoders),
    encoded with the decoder connected to Encode or, sometimes, forgotten (a skip decoder then says so)."""
    decoder = m.decoders[kind]
    features = clear(lambda: N["AdaINEncode"]().encode(m.other if foreign else m.enc, image,
                                                       decoder=decoder if connected else None)[0], "image")
    assume(features is not None)
    blended = clear(lambda: N["AdaINBlend"]().blend(features, m.foreign if foreign else m.styles[1], alpha,
                                                    mask)[0], "mask")
    feats = blended if blended is not None else features
    out = clear(lambda: N["AdaINDecode"]().decode(decoder, feats, tile_size, tile_overlap)[0],
                "tile_size", "tile_overlap", "'decoder' input")
    if out is not None:
        event(f"decoded by the {kind} decoder")
        assert_image(out, *image.shape[:3])
    elif kind == "skip" and not connected:
        with pytest.raises(AdaINInputError, match="skip decoder"):
            N["AdaINDecode"]().decode(decoder, feats, 0, 0)


COLOR = st.sampled_from(list(pipeline.COLOR_MODES) + ["sepia", ""])


@FUZZ
@given(content=images(), style=images(), alpha=alphas, color=COLOR, kind=DECODER_KINDS)
def test_style_transfer(m, content, style, alpha, color, kind):
    out = clear(lambda: N["AdaINStyleTransfer"]().transfer(m.enc, m.decoders[kind], content, style, alpha,
                                                           color)[0],
                "content_image", "style_image", "the style", "alpha", "preserve_color")
    if out is not None:
        event(f"stylized by the {kind} decoder")
        assert _is_unit(alpha) and color in pipeline.COLOR_MODES
        assert_image(out, *content.shape[:3])


@CHEAP
@given(image=images(max_side=40, max_batch=3), reference=images(max_side=40, max_batch=3))
def test_match_color(m, image, reference):
    out = clear(lambda: N["AdaINMatchColor"]().match(image, reference)[0], "image", "reference")
    if out is not None:
        assert_image(out, *image.shape[:3])


@CHEAP
@given(image=images(max_side=40, max_batch=3), reference=images(max_side=40, max_batch=3), strength=alphas,
       mask=st.none() | masks())
def test_adain_image(image, reference, strength, mask):
    out = clear(lambda: N["AdaINImage"]().match(image, reference, strength, mask)[0], "image", "reference",
                "strength", "mask")
    if out is not None:
        assert_image(out, *image.shape[:3])


@st.composite
def latents(draw):
    """LATENT dicts: 4/16/other channels, video latents, odd values and dtypes, broken layouts."""
    usable = draw(st.sampled_from([True, True, True, False]))
    b, c = draw(st.integers(1 if usable else 0, 3)), draw(st.sampled_from([4, 16, 4, 1, 128]))
    shape = (b, c, draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    shape = shape if draw(st.booleans()) else shape[:2] + shape[3:]
    if not usable:
        shape = draw(st.sampled_from([shape, shape[:3], (c,)]))
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16))))
    kind = draw(st.sampled_from(["normal", "normal", "constant", "huge", "large"] + ([] if usable else ["nan", "inf"])))
    if kind == "constant":
        x.fill_(draw(st.sampled_from([0.0, 3.0])))
    elif kind in ("huge", "large"):
        x = x * (1e30 if kind == "huge" else 1e5)  # beyond float32's or float16's range once squared or scaled
    elif kind in ("nan", "inf") and x.numel():
        x.view(-1)[0] = float(kind)
    latent = {"samples": x.to(draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16])))}
    if draw(st.booleans()):
        latent["noise_mask"], latent["batch_index"] = torch.ones(1, 1, 8, 8), list(range(max(b, 1)))
    return latent if usable or draw(st.booleans()) else draw(st.sampled_from([x, {"latent": x}, None]))


@CHEAP
@given(latent=latents(), reference=latents(), strength=alphas, mask=st.none() | masks())
def test_adain_latent(latent, reference, strength, mask):
    out = clear(lambda: N["AdaINLatent"]().match(latent, reference, strength, mask)[0], "latent", "reference",
                "strength", "mask")
    if out is not None:
        samples = out["samples"]
        assert samples.shape == latent["samples"].shape and samples.dtype == latent["samples"].dtype
        assert set(out) == set(latent) and all(out[k] is latent[k] for k in latent if k != "samples")
        assert torch.isfinite(samples).all(), "NaN or Inf in an output latent"


names = st.one_of(st.sampled_from(["calm", "moods/calm", " spaced ", "x.safetensors", "..", ".", "a/./b", "../up",
                                   "/abs", "C:\\win", "sub\\..\\..\\x", "", "  ", "a\x00b", "ü/ñ", "a" * 200]),
                  st.text(max_size=12))


@CHEAP
@given(name=names, overwrite=st.booleans())
def test_save_and_load_style(m, name, overwrite):
    style = m.styles[2]
    result = clear(lambda: N["AdaINSaveStyle"]().save(style, name, overwrite), "name", "adain_styles", "preset")
    if result is None:
        return
    path = result["ui"]["text"][0]
    assert path.startswith(str(m.styles_dir) + "/")
    relative = path[len(str(m.styles_dir)) + 1:]
    loaded = N["AdaINLoadStyle"]().load(relative)[0]
    assert torch.equal(loaded.mean, style.mean) and loaded.encoder_id == style.encoder_id


@FUZZ
@given(channels=st.sampled_from([1, 511, 512, 513]), count=st.integers(1, 2), std_kind=st.sampled_from(
    ["ok", "zero", "negative", "nan", "huge"]), layer=st.sampled_from(["relu4_1", "relu3_1", ""]),
    encoder_id=st.sampled_from(["own", "other", ""]), garbage=st.binary(max_size=64), kind=DECODER_KINDS)
def test_load_style_from_forged_or_broken_presets(m, channels, count, std_kind, layer, encoder_id, garbage, kind):
    """Presets written by something else: refused with a clear error, or usable by the next node (a skip
    decoder's features ask for the levels such a preset lacks)."""
    styles = m.styles_dir / "forged"
    styles.mkdir(parents=True, exist_ok=True)
    mean, std = torch.randn(count, channels), torch.rand(count, channels) + 0.1
    std = {"ok": std, "zero": std * 0, "negative": -std, "nan": std * math.nan, "huge": std * 1e30}[std_kind]
    ids = {"own": m.enc.identity, "other": m.other.identity, "": ""}
    save_safetensors({"mean": mean, "std": std}, styles / "p.safetensors",
                     {"format": "adain-style", "encoder_id": ids[encoder_id], "encoder_name": "x", "layer": layer})
    (styles / "garbage.safetensors").write_bytes(garbage)
    assert clear(lambda: N["AdaINLoadStyle"]().load("forged/garbage.safetensors"), "garbage.safetensors") is None
    style = clear(lambda: N["AdaINLoadStyle"]().load("forged/p.safetensors")[0], "p.safetensors")
    if style is None:
        return
    out = clear(lambda: N["AdaINBlend"]().blend(m.features[kind][count], style, 1.0)[0], "style", "encoder")
    if out is not None:
        assert torch.isfinite(out.features).all() and kind == "relu4_1"  # the forged preset has no skip levels
        image = clear(lambda: N["AdaINDecode"]().decode(m.decoders[kind], out)[0], "decoder")
        if image is not None:
            assert_image(image, count, 12, 20)


loader_names = st.one_of(st.sampled_from(["enc.safetensors", "dec.safetensors", "skip.safetensors"]),
                         st.sampled_from(["enc.safetensors", "dec.safetensors", "other_enc.safetensors", "missing.pth",
                                          "../enc.safetensors", "/etc/passwd", "C:\\x.pth", "", "a\x00b.pth",
                                          "adain_reference_decoder.safetensors",
                                          "vgg19_normalised_relu4_1.safetensors", "models/enc.safetensors"]),
                         st.text(max_size=10))


@CHEAP
@given(name=loader_names, precision=st.sampled_from(["auto", "auto", "fp32", "bf16", "fp16", "int8", ""]),
       which=st.sampled_from(["AdaINEncoderLoader", "AdaINDecoderLoader"]))
def test_loaders(m, name, precision, which):
    model = clear(lambda: N[which]().load(name, precision)[0], "precision", repr(name)[1:-1], "empty file name",
                  "download", "no-network-in-tests")
    if model is not None:
        assert model.precision == precision and model.name == name
