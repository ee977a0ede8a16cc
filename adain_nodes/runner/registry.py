"""The node types a headless run knows: the pack's nodes plus the core image nodes, and their inputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from ..nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .core_nodes import DISPLAY_NAMES, Folders, make_core_nodes
from .latent_nodes import make_latent_nodes
from .video_nodes import make_video_nodes

# Editor-only node types: never sent to the server, skipped by the UI -> API conversion.
VIRTUAL_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a node class, as INPUT_TYPES gives it."""

    name: str
    type: Any  # a socket type string, or a list of choices for a combo
    options: dict
    required: bool

    @property
    def type_name(self) -> str:
        return "COMBO" if isinstance(self.type, (list, tuple)) else str(self.type)

    @property
    def is_widget(self) -> bool:
        """The editor shows a widget (not only a socket) for this input."""
        return self.type_name in WIDGET_TYPES and not self.options.get("forceInput", False)

    @property
    def choices(self) -> list | None:
        if isinstance(self.type, (list, tuple)):
            return list(self.type)
        if self.type == "COMBO":
            return list(self.options.get("options", []))
        return None


def input_specs(cls: type) -> list[InputSpec]:
    """Required then optional inputs in declaration order (the editor's widget order)."""
    types = cls.INPUT_TYPES()
    specs = []
    for category in ("required", "optional"):
        for name, spec in (types.get(category) or {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append(InputSpec(name, spec[0], options, category == "required"))
    return specs


def hidden_inputs(cls: type) -> dict[str, str]:
    return dict(cls.INPUT_TYPES().get("hidden") or {})


def editor_widgets(cls: type) -> Iterator[tuple[str, bool]]:
    """The editor's widgets of a node class in order, as (name, serialized to the API prompt).

    Besides one widget per widget input, the editor adds an ``upload`` button after an input with
    ``image_upload`` and a ``control_after_generate`` combo after seed-like INT inputs; both
    store a value in ``widgets_values`` but are not sent to the server.
    """
    for spec in input_specs(cls):
        if not spec.is_widget:
            continue
        yield spec.name, True
        if spec.options.get("image_upload") or spec.options.get("video_upload"):
            yield "upload", False
        if spec.type_name == "INT" and (spec.options.get("control_after_generate")
                                         or spec.name in ("seed", "noise_seed")):
            yield "control_after_generate", False


class Registry:
    """Node classes by type name, with display names (the editor's default titles)."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.classes: dict[str, type] = {**make_core_nodes(folders), **make_latent_nodes(folders),
                                         **make_video_nodes(folders), **NODE_CLASS_MAPPINGS}
        self.display_names = {**DISPLAY_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}

    def __contains__(self, class_type: str) -> bool:
        return class_type in self.classes

    def __getitem__(self, class_type: str) -> type:
        return self.classes[class_type]

    def title(self, class_type: str) -> str:
        return self.display_names.get(class_type, class_type)

    def output_types(self, class_type: str) -> tuple:
        return tuple(self.classes[class_type].RETURN_TYPES)
