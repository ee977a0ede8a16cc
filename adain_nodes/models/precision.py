"""Compute precisions shared by the nodes and the trainer, and what ``auto`` picks on each device.

One place decides it, so inference and training agree on which CPUs get bf16.
"""
from __future__ import annotations

import torch

from ..errors import AdaINInputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 convolutions run about twice as fast as fp32 there."""
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch 2.x: absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in names)


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> torch.dtype:
    """The dtype to compute in. ``auto`` is bf16 on CPUs with fast bf16, fp32 on other CPUs; on accelerators fp16
    for inference; for training bf16 on CUDA where it has it (its range needs no loss scaling; fp16 else), fp32 on
    other accelerators.

    Inference: bench/bench_inference.py, at least 45 dB PSNR against fp32 on photos from 256 to 2048 px.
    Training: bench/bench_train.py, 1.54x the fp32 rate on the CPU, losses within 2%, gradient cosine 0.999.
    """
    if precision not in PRECISIONS:
        raise AdaINInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return DTYPES[precision]
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if training:  # other accelerators (MPS) train in fp32
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if device.type == "cuda" \
            else torch.float32
    return torch.float16
