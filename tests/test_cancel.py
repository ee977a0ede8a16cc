"""Progress and Cancel inside large images: one step per tile (images x tiles, as ComfyUI's upscale node counts
them), and an interrupt honoured within one tile, in encode, decode and the one-node transfer."""
from __future__ import annotations

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.loaded import LoadedModel
from adain_nodes.models.networks import SkipDecoder, VGGEncoder
from adain_nodes.tiling import Tiling, tile_count
from conftest import he_init, random_decoder, random_image

SIDE, TILING = 512, Tiling(64, 0)  # 8 x 8 = 64 tiles


class Interrupted(Exception):
    """What the host raises when the user presses Cancel."""


class CancelAfter(StandaloneRuntime):
    """A CPU runtime whose user presses Cancel once progress reaches ``after`` steps; records every report."""

    def __init__(self, after: int | None = None) -> None:
        super().__init__(torch.device("cpu"))
        self.after, self.bars, self.cancelled = after, [], False

    def progress(self, total):
        bar = (total, [])
        self.bars.append(bar)

        def report(done):
            bar[1].append(done)
            if self.after is not None and done >= self.after:
                self.cancelled = True
        return report

    def check_interrupt(self):
        if self.cancelled:
            raise Interrupted


class CountingEncoder(VGGEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.load_state_dict(he_init(VGGEncoder(), 0).state_dict())
        self.eval()
        self.calls = 0

    def run_fast(self, x, start, ends):
        self.calls += 1
        return super().run_fast(x, start, ends)


class CountingDecoder(SkipDecoder):
    def __init__(self) -> None:
        super().__init__()
        self.load_state_dict(random_decoder().state_dict(), strict=False)
        self.eval()
        self.calls = 0

    def infer(self, *levels):
        self.calls += 1
        return super().infer(*levels)


@pytest.fixture(scope="module")
def networks():
    return LoadedModel(CountingEncoder(), "0" * 16, "encoder"), LoadedModel(CountingDecoder(), "1" * 16, "decoder")


@pytest.fixture(scope="module")
def content():
    return random_image(1, SIDE, SIDE, seed=5).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def style():
    return random_image(1, 64, 64, seed=6).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def features(networks, content):
    """The 64-tile image encoded to the skip decoder's levels, reporting one step per tile."""
    encoder, decoder = networks
    assert tile_count(SIDE, SIDE, TILING) == 64
    runtime = CancelAfter()
    features = pipeline.encode(encoder, content, runtime, TILING, decoder.network.levels)
    assert runtime.bars == [(64, list(range(1, 65)))]
    return features


def counted(model: LoadedModel) -> LoadedModel:
    model.network.calls = 0
    return model


def test_decode_reports_every_tile_of_every_image(networks, features):
    _, decoder = networks
    runtime = CancelAfter()
    pipeline.decode(decoder, features.expand(2), runtime, TILING)
    assert runtime.bars == [(128, list(range(1, 129)))]  # a batch of 2 x 64 tiles


def test_cancel_stops_encode_and_decode_within_one_tile(networks, content, features):
    encoder, decoder = networks
    with pytest.raises(Interrupted):
        pipeline.encode(counted(encoder), content, CancelAfter(10), TILING, decoder.network.levels)
    assert encoder.network.calls <= 10 + 1
    with pytest.raises(Interrupted):
        pipeline.decode(counted(decoder), features, CancelAfter(10), TILING)
    assert decoder.network.calls <= 10 + 1


@pytest.mark.parametrize("after", [10, 64 + 10])
def test_cancel_stops_the_one_node_transfer_within_one_tile(networks, content, style, after):
    """Two passes over the tiles (statistics, then encode-and-decode): 128 steps, Cancel honoured in either."""
    encoder, decoder = networks
    runtime = CancelAfter(after)  # the style image's bar (one step) comes first
    with pytest.raises(Interrupted):
        pipeline.stylize(counted(encoder), counted(decoder), content, style, runtime, tiling=TILING)
    assert [total for total, _ in runtime.bars] == [1, 128]
    assert runtime.bars[1][1][-1] == after
    # the style image, the first pass's tiles, the second pass's tiles (each encoded as it is decoded)
    assert encoder.network.calls <= 1 + min(after, 64) + max(after - 64 + 1, 0)
    assert decoder.network.calls <= max(after - 64 + 1, 0)


def test_the_one_node_transfer_reports_both_passes(networks, content, style):
    encoder, decoder = networks
    runtime = CancelAfter()
    result = pipeline.stylize(encoder, decoder, content, style, runtime, tiling=TILING)
    assert result.shape == content.shape and runtime.bars[1] == (128, list(range(1, 129)))
