"""Where networks run and how memory, progress and interrupts are handled.

Inside ComfyUI everything goes through ``comfy.model_management`` (the model is wrapped in a
ModelPatcher so ComfyUI can evict it like any of its own models, as its upscale-model node does),
``comfy.utils.ProgressBar`` and its interrupt flag. Outside, a plain device choice stands in.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import torch
from ..models.loaded import LoadedModel

log = logging.getLogger(__name__)

DEVICE_ENV = "ADAIN_DEVICE"


class Runtime:
    """What the pipeline needs from its host; subclasses implement it for ComfyUI and for standalone use."""

    def compute_device(self) -> torch.device:
        raise NotImplementedError

    def output_device(self) -> torch.device:
        """Where node outputs are kept between nodes."""
        return torch.device("cpu")

    def load(self, model: LoadedModel, working_bytes: int) -> None:
        """Put ``model`` on the compute device, making room for it and ``working_bytes`` of activations."""
        raise NotImplementedError

    def free_bytes(self) -> int:
        """Memory available for activations on the compute device."""
        raise NotImplementedError

    def progress(self, total: int) -> Callable[[int], None]:
        """A callback taking the number of items done so far."""
        return lambda done: None

    def check_interrupt(self) -> None:
        """Raise if the user asked to stop."""

    def is_out_of_memory(self, error: BaseException) -> bool:
        return isinstance(error, torch.OutOfMemoryError)

    def release_cache(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class Steps:
    """Progress in steps of images x tiles (x passes), as ComfyUI's upscale node counts them, with the host's
    interrupt honoured after every step: a 64-tile image reports 64 times and stops within one tile of Cancel."""

    def __init__(self, runtime: Runtime, count: int, per_image: int) -> None:
        self.runtime, self.count = runtime, count
        self.restart(per_image, 0)

    def restart(self, per_image: int, images_done: int) -> None:
        """Count anew after the tiling changed (out-of-memory back-off), from ``images_done`` whole images."""
        self.per_image, self.done = per_image, images_done * per_image
        self.report = self.runtime.progress(self.count * per_image)

    def tick(self, steps: int = 1) -> None:
        self.done += steps
        self.report(self.done)
        self.runtime.check_interrupt()


def default_device() -> torch.device:
    """``ADAIN_DEVICE`` if set, else CUDA, then Apple MPS, then the CPU."""
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        try:
            device = torch.device(requested)
            torch.empty(1, device=device)
            return device
        except (RuntimeError, AssertionError) as exc:
            raise RuntimeError(f"{DEVICE_ENV}={requested!r} is not a usable torch device here ({exc}); "
                               "unset it or use cpu, cuda, cuda:N or mps") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class StandaloneRuntime(Runtime):
    """Tests, scripts and the headless runner: one device, models moved there on first use."""

    # On the CPU, batching does not speed convolutions up but hurts cache locality: a 512x512
    # frame per chunk ran 14% faster than 7 per chunk (bench/bench_inference.py, frames).
    CPU_WORKING_BYTES = 256 << 20

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or default_device()

    def compute_device(self) -> torch.device:
        return self.device

    def output_device(self) -> torch.device:
        """Outside ComfyUI nothing else needs the memory: keep results where the next node computes."""
        return self.device

    def load(self, model: LoadedModel, working_bytes: int) -> None:
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed-size frames: autotuned kernels pay off
        model.network.to(self.device)

    def free_bytes(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free)
        return self.CPU_WORKING_BYTES


class ComfyRuntime(Runtime):
    """ComfyUI's device, memory manager, progress bar and interrupt flag."""

    def __init__(self) -> None:
        import comfy.model_management as mm
        import comfy.utils

        self.mm = mm
        self.utils = comfy.utils

    def compute_device(self) -> torch.device:
        return self.mm.get_torch_device()

    def output_device(self) -> torch.device:
        return self.mm.intermediate_device()

    def load(self, model: LoadedModel, working_bytes: int) -> None:
        from comfy.model_patcher import ModelPatcher

        if model.patcher is None:
            model.patcher = ModelPatcher(model.network, load_device=self.mm.get_torch_device(),
                                         offload_device=self.mm.unet_offload_device())
        self.mm.load_models_gpu([model.patcher], memory_required=working_bytes, force_full_load=True)

    def free_bytes(self) -> int:
        return int(self.mm.get_free_memory(self.compute_device()))

    def progress(self, total: int) -> Callable[[int], None]:
        bar = self.utils.ProgressBar(total)
        return lambda done: bar.update_absolute(done, total)

    def check_interrupt(self) -> None:
        self.mm.throw_exception_if_processing_interrupted()

    def is_out_of_memory(self, error: BaseException) -> bool:
        return self.mm.is_oom(error) if hasattr(self.mm, "is_oom") else isinstance(error, self.mm.OOM_EXCEPTION)

    def release_cache(self) -> None:
        self.mm.soft_empty_cache()
