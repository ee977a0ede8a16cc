"""Adapters to the host application: ComfyUI when the pack runs inside it, plain torch otherwise."""
from __future__ import annotations

import sys

from .runtime import ComfyRuntime, Runtime, StandaloneRuntime


def in_comfyui() -> bool:
    """True inside a running ComfyUI, which imports its model management before loading custom nodes."""
    return "comfy.model_management" in sys.modules and "folder_paths" in sys.modules


def get_runtime() -> Runtime:
    return ComfyRuntime() if in_comfyui() else StandaloneRuntime()
