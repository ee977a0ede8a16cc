"""Executing a validated prompt: dependency order, each node once, progress through a reporter."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .registry import Registry, hidden_inputs, input_specs

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where progress goes: the CLI prints it, tests can collect it."""

    def node_started(self, index: int, total: int, node_id: str, class_type: str, title: str) -> None: ...

    def node_finished(self, index: int, total: int, node_id: str, seconds: float, ui: dict | None) -> None: ...


class LogReporter:
    """Progress to the ``logging`` module (the library default)."""

    def node_started(self, index, total, node_id, class_type, title):
        log.info("[%d/%d] node %s %s", index, total, node_id, class_type)

    def node_finished(self, index, total, node_id, seconds, ui):
        log.info("[%d/%d] node %s done in %.2f s", index, total, node_id, seconds)


class NodeExecutionError(RuntimeError):
    """A node raised while running; names the node like ComfyUI's execution_error."""

    def __init__(self, node_id: str, class_type: str, error: BaseException) -> None:
        super().__init__(f"Error while executing node {node_id} ({class_type}): {type(error).__name__}: {error}")
        self.node_id, self.class_type, self.error = node_id, class_type, error


@dataclass
class ExecutionResult:
    outputs: dict[str, tuple] = field(default_factory=dict)
    ui: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0


def _hidden_values(cls: type, node_id: str, prompt: dict, extra_pnginfo: dict | None) -> dict[str, Any]:
    values = {}
    for name, kind in hidden_inputs(cls).items():
        if kind == "PROMPT":
            values[name] = prompt
        elif kind == "EXTRA_PNGINFO":
            values[name] = extra_pnginfo
        elif kind == "UNIQUE_ID":
            values[name] = node_id
    return values


def execute_prompt(prompt: dict[str, dict], order: list[str], registry: Registry,
                   extra_pnginfo: dict | None = None, reporter: Reporter | None = None) -> ExecutionResult:
    """Run the nodes of ``order`` (dependencies first, as validation returns it) once each."""
    reporter = reporter or LogReporter()
    result = ExecutionResult()
    started = time.perf_counter()
    for index, node_id in enumerate(order, 1):
        node = prompt[node_id]
        class_type = node["class_type"]
        cls = registry[class_type]
        meta = node.get("_meta")
        title = meta.get("title", registry.title(class_type)) if isinstance(meta, dict) else registry.title(class_type)
        reporter.node_started(index, len(order), node_id, class_type, title)
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {}
        declared = {spec.name for spec in input_specs(cls)}
        for name, value in (node.get("inputs") or {}).items():
            if name not in declared:
                continue  # as ComfyUI: an input the node does not declare is not passed to it
            if isinstance(value, list):
                kwargs[name] = result.outputs[str(value[0])][value[1]]
            elif isinstance(value, dict) and "__value__" in value:
                kwargs[name] = value["__value__"]
            else:
                kwargs[name] = value
        kwargs.update(_hidden_values(cls, node_id, prompt, extra_pnginfo))
        try:
            returned = getattr(cls(), cls.FUNCTION)(**kwargs)
        except Exception as error:
            raise NodeExecutionError(node_id, class_type, error) from error
        ui = None
        if isinstance(returned, dict):
            ui = returned.get("ui")
            returned = returned.get("result", ())
        result.outputs[node_id] = tuple(returned or ())
        if ui:
            result.ui[node_id] = ui
        reporter.node_finished(index, len(order), node_id, time.perf_counter() - t0, ui)
    result.seconds = time.perf_counter() - started
    return result
