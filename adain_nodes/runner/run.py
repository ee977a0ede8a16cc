"""One call from a workflow file to written images: load, override, validate all, execute."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core_nodes import Folders
from .execute import ExecutionResult, Reporter, execute_prompt
from .graph import Workflow, apply_overrides, load_workflow
from .registry import Registry
from .validate import ValidationResult, validate_prompt

log = logging.getLogger(__name__)


class ValidationFailed(ValueError):
    """The workflow did not validate; nothing was executed."""

    def __init__(self, result: ValidationResult) -> None:
        super().__init__(result.message())
        self.result = result


@dataclass
class RunSummary:
    workflow: Workflow
    validation: ValidationResult
    execution: ExecutionResult
    written: list[dict[str, Any]] = field(default_factory=list)


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


def run_workflow(workflow_path: str | Path, input_dir: str | Path | None = None, output_dir: str | Path = "output",
                 overrides: list[str] = (), reporter: Reporter | None = None) -> RunSummary:
    """Run a workflow headless; raises ValidationFailed (before executing anything) or NodeExecutionError."""
    folders = Folders(Path(input_dir) if input_dir is not None else default_input_dir(workflow_path),
                      Path(output_dir))
    workflow, validation, registry = prepare(workflow_path, folders, overrides)
    if not validation.ok:
        raise ValidationFailed(validation)
    extra = {"workflow": workflow.ui} if workflow.ui is not None else None
    execution = execute_prompt(workflow.prompt, validation.order, registry, extra, reporter)
    return RunSummary(workflow, validation, execution, list(folders.written))
