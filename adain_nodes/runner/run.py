"""From a workflow file to a validated prompt: load, apply ``--set`` overrides, validate all (the CLI runs it)."""
from __future__ import annotations

from pathlib import Path

from .core_nodes import Folders
from .graph import Workflow, apply_overrides, load_workflow
from .registry import Registry
from .validate import ValidationResult, validate_prompt


def default_input_dir(workflow_path: str | Path) -> Path:
    """The workflow's sibling ``input/`` folder (as in ``examples/``), else ``./input``."""
    beside = Path(workflow_path).resolve().parent / "input"
    return beside if beside.is_dir() else Path("input")


def prepare(workflow_path: str | Path, folders: Folders, overrides: list[str] = ()) -> tuple[
        Workflow, ValidationResult, Registry]:
    """Load, apply ``--set`` overrides and validate, without running anything."""
    registry = Registry(folders)
    workflow = load_workflow(workflow_path, registry)
    changed = apply_overrides(workflow.prompt, list(overrides))
    validation = validate_prompt(workflow.prompt, registry, [(node, name) for node, name, _ in changed])
    return workflow, validation, registry
