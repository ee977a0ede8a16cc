"""Tiled processing: same features and (visually) the same picture as whole-image processing."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.errors import AdaINInputError
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.tiling import NO_TILING, Tiling, tile_count
from conftest import random_image

RUNTIME = StandaloneRuntime(torch.device("cpu"))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def nchw(image):
    return image.permute(0, 3, 1, 2)


def test_tiled_encoding_equals_whole_image(encoder):
    image = nchw(random_image(1, 200, 136))
    whole = pipeline.encode(encoder, image, RUNTIME, NO_TILING)
    tiled = pipeline.encode(encoder, image, RUNTIME, Tiling(size=64, overlap=64))
    assert tile_count(200, 136, Tiling(size=64, overlap=64)) > 4
    assert (whole.features - tiled.features).abs().max() <= 1e-4 * whole.features.abs().max()


@pytest.mark.parametrize("overlap", [0, 8])
def test_encoded_tiles_take_the_receptive_field_whatever_the_overlap(encoder, overlap):
    """The overlap is the decoder's cross-fade; encoded tiles always take relu4_1's receptive radius (37 px) as
    context, so a small overlap still gives the whole image's features and statistics."""
    image = nchw(random_image(1, 200, 136, seed=14))
    tiling = Tiling(size=64, overlap=overlap)
    whole = pipeline.encode(encoder, image, RUNTIME, NO_TILING)
    tiled = pipeline.encode(encoder, image, RUNTIME, tiling)
    assert (whole.features - tiled.features).abs().max() <= 1e-4 * whole.features.abs().max()
    stats, tiled_stats = (pipeline.style_statistics(encoder, image, RUNTIME, tiling=t) for t in (NO_TILING, tiling))
    assert torch.allclose(stats.mean, tiled_stats.mean, atol=1e-4)
    assert torch.allclose(stats.std, tiled_stats.std, atol=1e-4)


def test_tiled_stylization_is_seamless(encoder, decoder):
    content, style = nchw(random_image(2, 256, 192, seed=1)), nchw(random_image(1, 96, 96, seed=2))
    whole = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=NO_TILING)
    tiled = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=Tiling(size=96, overlap=64))
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) >= 40


def test_small_overlap_is_worse_but_still_finite(encoder, decoder):
    content, style = nchw(random_image(1, 192, 192, seed=3)), nchw(random_image(1, 64, 64, seed=4))
    whole = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=NO_TILING)
    rough = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=Tiling(size=64, overlap=0))
    good = pipeline.stylize(encoder, decoder, content, style, RUNTIME, tiling=Tiling(size=64, overlap=64))
    assert torch.isfinite(rough).all()
    assert psnr(good, whole) > psnr(rough, whole)  # overlap is what removes the seams


def test_statistics_come_from_the_whole_image(encoder):
    """A tiled style image gives the statistics of the whole image, not of one tile."""
    style = nchw(random_image(1, 160, 160, seed=5))
    whole = pipeline.style_statistics(encoder, style, RUNTIME, tiling=NO_TILING)
    tiled = pipeline.style_statistics(encoder, style, RUNTIME, tiling=Tiling(size=64, overlap=64))
    assert torch.allclose(whole.mean, tiled.mean, atol=1e-4) and torch.allclose(whole.std, tiled.std, atol=1e-4)


@pytest.mark.parametrize("size,overlap", [(32, 8), (128, 2000), (128, -8)])
def test_invalid_tiling_is_refused(size, overlap):
    with pytest.raises(AdaINInputError, match="tile_"):
        Tiling(size, overlap)


def test_nodes_accept_tile_options(encoder, decoder):
    from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
    image = random_image(1, 150, 90)
    out = N["AdaINStyleTransfer"]().transfer(encoder, decoder, image, random_image(1, 64, 64), 1.0, "off", 64, 32)[0]
    assert out.shape == image.shape


# Every valid widget value works: any image size, tile size and overlap (0 included).
from hypothesis import example, given, settings, strategies as st  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from adain_nodes.tiling import GRID, MAX_OVERLAP, MIN_TILE_FEATURES, _tiles  # noqa: E402
from conftest import he_init, random_decoder  # noqa: E402

TILE_SIZES = st.integers(64, 2048)
OVERLAPS = st.one_of(st.sampled_from([0, 1, GRID - 1, GRID, GRID + 1]), st.integers(0, MAX_OVERLAP))


@settings(max_examples=150, deadline=None)
@given(h=st.integers(2, 300), w=st.integers(2, 300), size=TILE_SIZES, overlap=OVERLAPS)
def test_tiles_cover_the_grid_once_and_are_never_too_thin(h, w, size, overlap):
    covered = torch.zeros(h, w, dtype=torch.int32)
    for (y0, y1, ya, yb), (x0, x1, xa, xb) in _tiles(h, w, Tiling(size, overlap)):
        assert ya <= y0 < y1 <= yb and xa <= x0 < x1 <= xb
        assert yb - ya >= MIN_TILE_FEATURES and xb - xa >= MIN_TILE_FEATURES
        covered[y0:y1, x0:x1] += 1
    assert bool((covered == 1).all())


@pytest.fixture(scope="module")
def small_networks():
    from adain_nodes.models.loaded import LoadedModel
    from adain_nodes.models.networks import VGGEncoder

    return (LoadedModel(he_init(VGGEncoder(), 0), "0" * 16, "random encoder"),
            LoadedModel(random_decoder(), "1" * 16, "random decoder"))


@settings(max_examples=8, deadline=None)
@example(h=20, w=72, size=64, overlap=0).via("a last tile one feature wide")
@example(h=136, w=30, size=64, overlap=1).via("a last tile one feature high")
@given(h=st.integers(1, 100), w=st.integers(1, 100), size=st.integers(64, 80), overlap=st.sampled_from([0, 1, 7, 8, 9]))
def test_every_size_and_overlap_encodes_and_decodes_to_the_input_size(small_networks, h, w, size, overlap):
    encoder, decoder = small_networks
    content = nchw(random_image(1, h, w, seed=h * w))
    features = pipeline.encode(encoder, content, RUNTIME, Tiling(size, overlap))
    out = pipeline.decode(decoder, features, RUNTIME, Tiling(size, overlap))
    assert out.shape == content.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("width,size", [(1032, 1024), (136, 64)])
def test_overlap_zero_with_a_one_feature_last_tile(small_networks, width, size):
    """The reported case: 1032 px at tile size 1024 left a last tile one feature (8 px) wide."""
    encoder, decoder = small_networks
    content = nchw(random_image(1, 16, width, seed=3))
    whole = pipeline.encode(encoder, content, RUNTIME, NO_TILING)
    tiled = pipeline.encode(encoder, content, RUNTIME, Tiling(size, 0))
    assert tiled.features.shape == whole.features.shape
    image = pipeline.decode(decoder, tiled, RUNTIME, Tiling(size, 0))
    assert image.shape == content.shape and torch.isfinite(image).all()
    assert tile_count(16, width, Tiling(size, 0)) == -(-width // (size // GRID * GRID))


def recording_encoder(source):
    """The real encoder's fast path, counting its calls and recording the largest feature map it returned."""
    from adain_nodes.models.networks import VGGEncoder

    class Recording(VGGEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.load_state_dict(source.state_dict())
            self.eval()
            self.calls, self.largest = 0, 0

        def run_fast(self, x, start, ends):
            out = super().run_fast(x, start, ends)
            self.calls += 1
            self.largest = max([self.largest] + [t.shape[-2] * t.shape[-1] * t.shape[-3] for t in out])
            return out

    return Recording()


def test_the_one_node_transfer_never_holds_a_finer_level_whole(encoder, model_dir):
    """A skip decoder's relu3_1 and relu2_1 of a large image are encoded per tile (statistics accumulated,
    then again for each decoder tile), never whole: memory stays bounded by the tile."""
    from adain_nodes.models.networks import SkipDecoder
    from conftest import random_skip_decoder

    network = recording_encoder(encoder.network)
    content, style = nchw(random_image(1, 512, 384, seed=8)), nchw(random_image(1, 64, 64, seed=9))
    skip = dataclasses.replace(encoder, network=random_skip_decoder())
    assert isinstance(skip.network, SkipDecoder)
    tiled = pipeline.stylize(dataclasses.replace(encoder, network=network), skip, content, style, RUNTIME,
                             tiling=Tiling(64, 16))
    whole_relu2_1 = 128 * 256 * 192
    assert not pipeline.finer_levels_fit((512, 384), skip.network.levels[1:], Tiling(64, 16), torch.float32)
    assert 0 < network.largest <= whole_relu2_1 // 8
    # the same as the modular graph, which holds every level whole, with the same tiles
    stats = pipeline.style_statistics(encoder, style, RUNTIME)
    features = pipeline.encode(encoder, content, RUNTIME, Tiling(64, 16), skip.network.levels)
    reference = pipeline.decode(skip, pipeline.blend(features, stats), RUNTIME, Tiling(64, 16))
    assert psnr(tiled, reference) >= 60


def test_finer_levels_that_fit_a_tile_are_kept_from_the_first_pass(encoder):
    """An image whose finer levels fit one tile's working memory is encoded once: the decoder's tiles take the
    kept levels, and the picture is the one encoding them again per tile would give (the modular graph's)."""
    from adain_nodes.tiling import tile_count
    from conftest import random_skip_decoder

    network, tiling = recording_encoder(encoder.network), Tiling(64, 16)
    content, style = nchw(random_image(1, 192, 160, seed=12)), nchw(random_image(1, 64, 64, seed=13))
    skip = dataclasses.replace(encoder, network=random_skip_decoder())
    finer = skip.network.levels[1:]
    assert pipeline.finer_levels_fit((192, 160), finer, tiling, torch.float32)
    tiled = pipeline.stylize(dataclasses.replace(encoder, network=network), skip, content, style, RUNTIME,
                             tiling=tiling)
    assert network.calls == 1 + tile_count(192, 160, tiling)  # the style, then the first pass only
    stats = pipeline.style_statistics(encoder, style, RUNTIME)
    features = pipeline.encode(encoder, content, RUNTIME, tiling, skip.network.levels)
    reference = pipeline.decode(skip, pipeline.blend(features, stats), RUNTIME, tiling)
    assert psnr(tiled, reference) >= 60


class Outputs(TorchDispatchMode):
    """Records the shape and dtype of every op's new output (new memory, not views or in-place results)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[tuple[int, ...], torch.dtype]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        self.seen |= {(tuple(t.shape), t.dtype) for t in tree_leaves(out)
                      if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in given}
        return out

    def shapes(self) -> set[tuple[int, ...]]:
        return {shape for shape, _ in self.seen}


def test_a_full_resolution_level_is_encoded_per_tile_not_kept(encoder):
    """With relu1_1 among a skip decoder's levels and the others fitting a tile, the first pass keeps relu3_1 and
    relu2_1 but never holds relu1_1 whole (64 values a pixel; one convolution to compute again per tile), and the
    picture is the modular graph's."""
    from adain_nodes.models.networks import SkipDecoder
    from conftest import random_skip_decoder

    height, width, tiling = 192, 160, Tiling(64, 16)
    content, style = nchw(random_image(1, height, width, seed=14)), nchw(random_image(1, 64, 64, seed=15))
    network = SkipDecoder(("relu3_1", "relu2_1", "relu1_1"))
    network.load_state_dict(random_skip_decoder(3).state_dict(), strict=False)
    torch.nn.init.normal_(network.skip["relu1_1"].weight, std=0.02)
    skip = dataclasses.replace(encoder, network=network.eval())
    assert pipeline.finer_levels_fit((height, width), ("relu3_1", "relu2_1"), tiling, torch.float32)
    outputs = Outputs()
    with outputs:
        tiled = pipeline.stylize(encoder, skip, content, style, RUNTIME, tiling=tiling)
    assert (1, 128, height // 2, width // 2) in outputs.shapes()  # relu2_1 kept whole from the first pass
    assert (1, 64, height, width) not in outputs.shapes()  # relu1_1 never whole
    stats = pipeline.style_statistics(encoder, style, RUNTIME)
    features = pipeline.encode(encoder, content, RUNTIME, tiling, network.levels)
    reference = pipeline.decode(skip, pipeline.blend(features, stats), RUNTIME, tiling)
    assert psnr(tiled, reference) >= 60


def test_the_one_node_transfer_holds_the_whole_image_only_as_computed(encoder):
    """Besides the input and the output, a large image is held only as the AdaIN layer in the precision the encoder
    computed it (no float32 copy), no finer level or pooling whole, and no map of the cross-fade's weights: every
    op's new output is recorded (shape and dtype), whole-image ones are looked for."""
    from adain_nodes.core.layers import ENCODER_LAYERS
    from conftest import random_skip_decoder

    height, width, tiling = 576, 448, Tiling(64, 8)
    content, style = nchw(random_image(1, height, width, seed=10)), nchw(random_image(1, 64, 64, seed=11))
    encoder = dataclasses.replace(encoder, precision="bf16")  # what auto is on CPUs with fast bf16
    skip = dataclasses.replace(encoder, network=random_skip_decoder())
    assert not pipeline.finer_levels_fit((height, width), skip.network.levels[1:], tiling, torch.bfloat16)
    outputs = Outputs()
    with outputs:
        pipeline.stylize(encoder, skip, content, style, RUNTIME, tiling=tiling)
    computed = torch.bfloat16

    def dtypes(channels: int, stride: int) -> set[torch.dtype]:
        return {dtype for shape, dtype in outputs.seen if shape == (1, channels, height // stride, width // stride)}

    assert not dtypes(1, 1)  # no whole-image weight map
    assert dtypes(512, 8) == {computed}  # relu4_1, as computed
    assert not dtypes(64, 2)  # the first pooling
    for name in skip.network.levels[1:]:  # the finer levels
        assert not dtypes(ENCODER_LAYERS[name].channels, ENCODER_LAYERS[name].stride)
