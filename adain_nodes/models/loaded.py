"""A network as loaded from a weight file: what the ADAIN_ENCODER and ADAIN_DECODER sockets carry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from torch import nn

Network = TypeVar("Network", bound=nn.Module)


@dataclass(eq=False)
class LoadedModel(Generic[Network]):
    """The network with what the pipeline and the host need to know about it, in one typed place.

    ``identity`` is a hash of the weights (equal for a .pth and its conversion), so statistics can be
    checked against the encoder that made them; ``patcher`` is the host's own wrapper for memory
    management (ComfyUI's ModelPatcher), made on first use and kept with the model it wraps.
    """

    network: Network
    identity: str
    name: str
    precision: str = "fp32"
    metadata: dict[str, str] = field(default_factory=dict)
    patcher: Any = None
