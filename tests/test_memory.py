"""Chunking by free memory and the out-of-memory back-off of batch processing."""
from __future__ import annotations

import torch

from adain_nodes import pipeline
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.tiling import NO_TILING
from conftest import random_image


class TightMemory(StandaloneRuntime):
    """A CPU runtime that reports ``free`` bytes and raises OOM for chunks above ``limit`` images,
    the way a GPU allocator does when the estimate was too optimistic."""

    def __init__(self, free: int, limit: int) -> None:
        super().__init__(torch.device("cpu"))
        self.free, self.limit, self.chunks, self.progress_seen = free, limit, [], []

    def free_bytes(self) -> int:
        return self.free

    def progress(self, total):
        return self.progress_seen.append


def test_out_of_memory_backs_off_and_gives_the_same_result(encoder, decoder):
    images = random_image(7, 32, 32).permute(0, 3, 1, 2)
    reference = pipeline.encode(encoder, images, StandaloneRuntime(torch.device("cpu")), NO_TILING).features
    runtime = TightMemory(free=1 << 40, limit=2)  # the estimate allows all 7 at once; only 2 fit
    original = encoder.encode

    def encode_with_limit(x, layers=("relu4_1",), fast=False):
        runtime.chunks.append(x.shape[0])
        if x.shape[0] > runtime.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(x, layers, fast)

    encoder.encode = encode_with_limit
    try:
        features = pipeline.encode(encoder, images, runtime, NO_TILING).features
    finally:
        del encoder.encode
    assert torch.allclose(features, reference, atol=1e-5)  # other batch sizes may pick other kernels
    assert runtime.chunks == [7, 3] + [1] * 7  # halved until it fits, then every image exactly once
    assert runtime.progress_seen[-1] == 7


def test_chunks_follow_free_memory(encoder):
    images = random_image(5, 32, 32).permute(0, 3, 1, 2)
    per_image = 32 * 32 * pipeline.BYTES_PER_PIXEL
    runtime = TightMemory(free=2 * per_image, limit=99)
    original = encoder.encode

    def record(x, layers=("relu4_1",), fast=False):
        runtime.chunks.append(x.shape[0])
        return original(x, layers, fast)

    encoder.encode = record
    try:
        pipeline.encode(encoder, images, runtime, NO_TILING)
    finally:
        del encoder.encode
    assert runtime.chunks == [2, 2, 1]
    assert runtime.progress_seen == [2, 4, 5]


def test_errors_that_are_not_out_of_memory_are_not_retried(encoder):
    images = random_image(4, 32, 32).permute(0, 3, 1, 2)
    runtime = TightMemory(free=1 << 40, limit=99)
    calls = []

    def broken(x, layers=("relu4_1",), fast=False):
        calls.append(x.shape[0])
        raise RuntimeError("something else")

    encoder.encode = broken
    try:
        try:
            pipeline.encode(encoder, images, runtime, NO_TILING)
        except RuntimeError as exc:
            assert "something else" in str(exc)
    finally:
        del encoder.encode
    assert calls == [4]
