"""Where this process stands in a torchrun launch: its rank, device and share of the CPU cores."""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..host.runtime import DEVICE_ENV, default_device

log = logging.getLogger(__name__)

# Ranks meet only at the start and the end; the end waits for the slowest rank's whole share.
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()


def join() -> Rank:
    """This process's rank from torchrun's environment; joins a gloo group (only barriers are needed, and
    gloo runs on any device) when there is more than one process."""
    env = os.environ
    rank = Rank(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
                int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))
    if rank.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return rank


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(rank: Rank) -> torch.device:
    """``ADAIN_DEVICE`` if set, else GPU number ``local_rank`` (round robin), else the host's default device."""
    if not os.environ.get(DEVICE_ENV, "").strip() and torch.cuda.is_available():
        device = torch.device("cuda", rank.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return default_device()


def cpu_threads(rank: Rank, requested: int) -> int:
    """``requested``, or the machine's cores split evenly between the processes on it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return requested or max(1, cores // rank.local_world_size)
