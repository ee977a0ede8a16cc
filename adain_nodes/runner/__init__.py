"""Headless execution of ComfyUI workflows that use this pack (``python -m adain_nodes run``).

``graph`` reads API or editor (UI) workflows and converts the latter as the editor does,
``validate`` checks the whole graph first with ComfyUI's error messages, ``execute`` runs each
node once in dependency order, ``core_nodes`` provides ComfyUI's LoadImage/SaveImage/PreviewImage,
and ``server`` sends the same workflow to a running ComfyUI instead.
"""
from .core_nodes import Folders
from .execute import ExecutionResult, NodeExecutionError, execute_prompt
from .graph import Workflow, WorkflowError, apply_overrides, load_workflow, ui_to_api
from .registry import Registry
from .validate import ValidationIssue, ValidationResult, validate_prompt

__all__ = ["Folders", "ExecutionResult", "NodeExecutionError", "execute_prompt", "Workflow", "WorkflowError",
           "apply_overrides", "load_workflow", "ui_to_api", "Registry", "ValidationIssue", "ValidationResult",
           "validate_prompt"]
