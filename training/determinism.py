"""Kernels that give the same bits on every run, so a resumed GPU run equals an uninterrupted one.

CPU training is deterministic as it is. On CUDA some kernels (cuDNN's weight gradients among them)
add partial sums in whatever order the threads finish, so two identical runs part in the last bits
after one step; ``--deterministic`` asks torch and cuDNN for the ordered kernels instead (slower).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

# cuBLAS needs a fixed workspace for reproducible results; read when its first handle is made
_CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Within the block torch and cuDNN pick deterministic kernels; the previous settings come back after."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    # warn_only: a kernel with no ordered version still runs, and its warning names it
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
