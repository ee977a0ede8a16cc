"""Chunking by free memory and the out-of-memory back-off of batch processing: chunks, then tiles.

Out-of-memory is injected the way a GPU allocator raises it, from inside the network's forward: the
loaded model's network is wrapped, everything else (chunking, tiling, AdaIN) is the real code path.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from adain_nodes import pipeline
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.networks import AdaINDecoder, VGGEncoder
from adain_nodes.tiling import MAX_ENCODER_CONTEXT, MIN_BACKOFF_TILE, NO_TILING, Tiling
from conftest import random_image

CPU = torch.device("cpu")


class TightMemory(StandaloneRuntime):
    """A CPU runtime that reports ``free`` bytes and records progress."""

    def __init__(self, free: int) -> None:
        super().__init__(CPU)
        self.free, self.progress_seen = free, []

    def free_bytes(self) -> int:
        return self.free

    def progress(self, total):
        return self.progress_seen.append


def oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


class SmallMemoryEncoder(VGGEncoder):
    """The real encoder, failing like an allocator when a call holds more than ``limit`` pixels (or raising
    ``error`` on every call)."""

    def __init__(self, source: VGGEncoder, limit: int, error: Exception | None = None) -> None:
        super().__init__()
        self.load_state_dict(source.state_dict())
        self.eval()
        self.limit, self.error, self.calls = limit, error, []

    def encode(self, image, layers=("relu4_1",), fast=False):
        self.calls.append(tuple(image.shape))
        if self.error is not None:
            raise self.error
        if image.shape[0] * image.shape[-2] * image.shape[-1] > self.limit:
            raise oom()
        return super().encode(image, layers, fast)


class SmallMemoryDecoder(AdaINDecoder):
    def __init__(self, source: AdaINDecoder, limit: int) -> None:
        super().__init__()
        self.load_state_dict(source.state_dict())
        self.eval()
        self.limit, self.calls = limit, []

    def infer(self, features):
        self.calls.append(tuple(features.shape))
        if features.shape[0] * features.shape[-2] * features.shape[-1] * 64 > self.limit:
            raise oom()
        return super().infer(features)


def test_out_of_memory_backs_off_and_gives_the_same_result(encoder):
    images = random_image(7, 32, 32).permute(0, 3, 1, 2)
    reference = pipeline.encode(encoder, images, StandaloneRuntime(CPU), NO_TILING).features
    runtime = TightMemory(free=1 << 40)  # the estimate allows all 7 at once; only 2 fit
    small = SmallMemoryEncoder(encoder.network, limit=2 * 32 * 32)
    features = pipeline.encode(dataclasses.replace(encoder, network=small), images, runtime, NO_TILING).features
    assert torch.allclose(features, reference, atol=1e-5)  # other batch sizes may pick other kernels
    assert [shape[0] for shape in small.calls] == [7, 3] + [1] * 7  # halved until it fits, each image once
    assert runtime.progress_seen[-1] == 7


def test_one_image_that_does_not_fit_is_retried_in_smaller_tiles(encoder, decoder):
    """As ComfyUI's upscale node: at one image per chunk, the tile is halved until it fits."""
    image = random_image(1, 300, 260, seed=3).permute(0, 3, 1, 2)
    tiling = Tiling(1024, 16)  # 300 px: not tiled at first
    small_encoder = SmallMemoryEncoder(encoder.network, limit=250 * 250)
    features = pipeline.encode(dataclasses.replace(encoder, network=small_encoder), image, TightMemory(1 << 40),
                               tiling)
    sides = [max(shape[-2:]) for shape in small_encoder.calls]
    # whole (padded), then 2x2 tiles of half its side, with the encoder's context on their inner sides
    assert sides[0] == 304 and sides[1:] == [152 + MAX_ENCODER_CONTEXT] * 4
    expected = pipeline.encode(encoder, image, StandaloneRuntime(CPU), Tiling(152, 16))
    assert torch.equal(features.features, expected.features)

    small_decoder = SmallMemoryDecoder(decoder.network, limit=250 * 250)
    decoded = pipeline.decode(dataclasses.replace(decoder, network=small_decoder), features, TightMemory(1 << 40),
                              tiling)
    assert [8 * max(shape[-2:]) for shape in small_decoder.calls] == [304] + [152 + 16] * 4
    assert torch.equal(decoded, pipeline.decode(decoder, features, StandaloneRuntime(CPU), Tiling(152, 16)))


def test_out_of_memory_below_the_smallest_tile_is_raised(encoder):
    image = random_image(1, 256, 256).permute(0, 3, 1, 2)
    small = SmallMemoryEncoder(encoder.network, limit=16 * 16)
    with pytest.raises(torch.OutOfMemoryError, match="simulated"):
        pipeline.encode(dataclasses.replace(encoder, network=small), image, TightMemory(1 << 40), Tiling(1024, 0))
    sides = [max(shape[-2:]) for shape in small.calls]
    # 256 whole, then 128 px tiles (with the encoder's context on one side), then no smaller tile is tried
    assert sides == [256, MIN_BACKOFF_TILE + MAX_ENCODER_CONTEXT]


def test_chunks_follow_free_memory(encoder):
    images = random_image(5, 32, 32).permute(0, 3, 1, 2)
    per_image = 32 * 32 * pipeline.BYTES_PER_PIXEL
    runtime = TightMemory(free=2 * per_image)
    recording = SmallMemoryEncoder(encoder.network, limit=1 << 40)
    pipeline.encode(dataclasses.replace(encoder, network=recording), images, runtime, NO_TILING)
    assert [shape[0] for shape in recording.calls] == [2, 2, 1]
    assert runtime.progress_seen == [2, 4, 5]


def test_chunks_land_in_one_batch_without_a_concatenated_copy(encoder):
    """Chunked results fill the batch's one output as they come: the same features as one chunk, and no op makes a
    second whole-batch tensor (a concatenation would hold every chunk twice)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Concatenations(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.cat.default:
                self.batches.append(out.shape[0])
            return out

    images = random_image(5, 32, 32).permute(0, 3, 1, 2)
    whole = pipeline.encode(encoder, images, TightMemory(free=1 << 40), NO_TILING)
    concatenations = Concatenations()
    with concatenations:
        chunked = pipeline.encode(encoder, images, TightMemory(free=2 * 32 * 32 * pipeline.BYTES_PER_PIXEL),
                                  NO_TILING)
    assert 5 not in concatenations.batches
    torch.testing.assert_close(chunked.features, whole.features)


def test_errors_that_are_not_out_of_memory_are_not_retried(encoder):
    images = random_image(4, 32, 32).permute(0, 3, 1, 2)
    broken = SmallMemoryEncoder(encoder.network, limit=1 << 40, error=RuntimeError("something else"))
    with pytest.raises(RuntimeError, match="something else"):
        pipeline.encode(dataclasses.replace(encoder, network=broken), images, TightMemory(1 << 40), NO_TILING)
    assert [shape[0] for shape in broken.calls] == [4]
