"""Whole-graph validation before anything runs, with ComfyUI's error types and messages.

The checks and wording follow ComfyUI's ``execution.validate_prompt`` so an error seen headless
reads like the one the editor shows; a few cases ComfyUI reports as internal exceptions (a link
to a node or output that does not exist, a literal value on a socket-only input) get a clear
message here. Unlike ComfyUI, which still runs the outputs that validated, any error stops the
run: a batch job should not half-succeed silently.
"""
from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from .registry import WIDGET_TYPES, InputSpec, Registry, hidden_inputs, input_specs


@dataclass(frozen=True)
class ValidationIssue:
    """One problem, located like ComfyUI's node_errors entries."""

    type: str
    message: str
    details: str = ""
    node_id: str | None = None
    class_type: str | None = None
    input_name: str | None = None

    def describe(self) -> str:
        where = "prompt" if self.node_id is None else f"node {self.node_id}" + (
            f" ({self.class_type})" if self.class_type else "")
        if self.input_name:
            where += f" input '{self.input_name}'"
        details = f" [{self.details}]" if self.details and self.details != self.input_name else ""
        return f"{where}: {self.message}{details}"


@dataclass
class ValidationResult:
    issues: list[ValidationIssue] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # nodes to execute, dependencies first

    @property
    def ok(self) -> bool:
        return not self.issues

    def message(self) -> str:
        if not self.issues:
            return "ok"
        head = self.issues[0]
        if head.type in ("prompt_no_outputs", "missing_node_type", "invalid_prompt"):
            return f"{head.message}: {head.details}" if head.details else head.message
        return "Prompt outputs failed validation:\n" + "\n".join("  " + i.describe() for i in self.issues)


def types_compatible(received: Any, expected: Any) -> bool:
    """ComfyUI's validate_node_input: equal, '*' wildcard, or overlapping comma-separated unions."""
    if isinstance(expected, (list, tuple)):
        return received in ("COMBO", "*") or isinstance(received, (list, tuple))
    if received == expected or "*" in (received, expected):
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def _node_sort_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def _convert(spec: InputSpec, value: Any) -> Any:
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if spec.type_name == "INT":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value)
    if spec.type_name == "FLOAT":
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value} is not finite")
        return number
    if spec.type_name == "STRING":
        if isinstance(value, (dict, list)):
            raise ValueError("a list or object is not text")
        return str(value)
    if spec.type_name == "BOOLEAN":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return bool(value)
    return value


class _Validator:
    def __init__(self, prompt: dict[str, dict], registry: Registry, strict_inputs: Iterable[tuple[str, str]]):
        self.prompt = prompt
        self.registry = registry
        self.strict = set(strict_inputs)
        self.issues: list[ValidationIssue] = []
        self.done: set[str] = set()
        self.order: list[str] = []

    def issue(self, kind: str, message: str, details: str, node_id: str, input_name: str | None = None) -> None:
        class_type = self.prompt[node_id].get("class_type")
        self.issues.append(ValidationIssue(kind, message, details, node_id, class_type, input_name))

    def visit(self, node_id: str, path: list[str]) -> None:
        if node_id in self.done:
            return
        if node_id in path:
            cycle = path[path.index(node_id):] + [node_id]
            text = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in cycle)
            if not any(i.type == "dependency_cycle" and i.node_id == node_id for i in self.issues):
                self.issue("dependency_cycle", "Dependency cycle detected", text, node_id)
            return
        node = self.prompt[node_id]
        cls = self.registry[node["class_type"]]
        inputs = node.get("inputs") or {}
        specs = input_specs(cls)
        declared = {s.name for s in specs}
        for node_key, name in sorted(self.strict):
            if node_key == node_id and name not in declared:
                self.issue("unknown_input", "Unknown input", f"{name} is not an input of {node['class_type']}; "
                           f"inputs: {', '.join(sorted(declared))}", node_id, name)
        for name, value in inputs.items():
            if name not in declared and isinstance(value, list):
                self.check_undeclared_link(node_id, name, value)
        # as ComfyUI: inputs the node's VALIDATE_INPUTS takes skip the min/max/list checks (it checks them), and
        # one that takes ``input_types`` checks the types of its links itself
        custom = set(inspect.getfullargspec(cls.VALIDATE_INPUTS).args) if hasattr(cls, "VALIDATE_INPUTS") else set()
        received: dict[str, Any] = {}
        for spec in specs:
            if spec.name not in inputs:
                if spec.required:
                    self.issue("required_input_missing", "Required input is missing", spec.name, node_id, spec.name)
                continue
            value = inputs[spec.name]
            if isinstance(value, list):
                upstream = self.check_link(node_id, spec, value, received, "input_types" not in custom)
                if upstream is not None:
                    self.visit(upstream, path + [node_id])
                continue
            converted = self.check_value(node_id, spec, value, spec.name not in custom)
            if converted is not None:
                inputs[spec.name] = converted[0]
        self.custom_validation(node_id, cls, inputs, received)
        self.done.add(node_id)
        self.order.append(node_id)

    def check_undeclared_link(self, node_id: str, name: str, value: list) -> None:
        """An input the node does not declare is never passed to it (as in ComfyUI), but a link there must
        still point at a node and output that exist: a workflow that says otherwise is broken."""
        spec = InputSpec(name, "*", {}, False)
        self.check_link(node_id, spec, value, {})

    def check_link(self, node_id: str, spec: InputSpec, value: list, received_types: dict[str, Any],
                   check_type: bool = True) -> str | None:
        """The node a link comes from, or None after reporting why the link is broken; ``received_types``
        collects the linked output's type per input (ComfyUI's ``input_types``)."""
        if len(value) != 2:
            self.issue("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                       spec.name, node_id, spec.name)
            return None
        origin, slot = value[0], value[1]
        if isinstance(origin, (list, dict)) or isinstance(origin, bool):
            self.issue("bad_linked_input", "Bad linked input, the node id must be a string or number",
                       f"{spec.name}: {origin!r}", node_id, spec.name)
            return None
        origin = str(origin)
        if origin not in self.prompt:
            self.issue("linked_node_missing", "Linked node does not exist",
                       f"{spec.name} is linked to node {origin}, which is not in the workflow", node_id, spec.name)
            return None
        origin_type = self.prompt[origin].get("class_type")
        if origin_type not in self.registry:
            return None  # reported as a missing node type already
        outputs = self.registry.output_types(origin_type)
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < len(outputs):
            self.issue("linked_output_missing", "Linked output does not exist",
                       f"{spec.name} is linked to output {slot} of node {origin} ({origin_type}), which has "
                       f"{len(outputs)} output(s)", node_id, spec.name)
            return None
        received = received_types[spec.name] = outputs[slot]
        if check_type and not types_compatible(received, spec.type):
            self.issue("return_type_mismatch", "Return type mismatch between linked nodes",
                       f"{spec.name}, received_type({received}) mismatch input_type({spec.type_name})",
                       node_id, spec.name)
            return None
        return origin

    def check_value(self, node_id: str, spec: InputSpec, value: Any, builtin_checks: bool = True) -> tuple[Any] | None:
        if spec.type_name not in WIDGET_TYPES:
            self.issue("link_required", "Input needs a link",
                       f"{spec.name} takes a {spec.type_name} from another node, not the value {value!r}",
                       node_id, spec.name)
            return None
        try:
            value = _convert(spec, value)
        except (TypeError, ValueError, OverflowError) as exc:
            self.issue("invalid_input_type", f"Failed to convert an input value to a {spec.type_name} value",
                       f"{spec.name}, {value}, {exc}", node_id, spec.name)
            return None
        if not builtin_checks:
            return (value,)
        if "min" in spec.options and value < spec.options["min"]:
            self.issue("value_smaller_than_min", f"Value {value} smaller than min of {spec.options['min']}",
                       spec.name, node_id, spec.name)
            return None
        if "max" in spec.options and value > spec.options["max"]:
            self.issue("value_bigger_than_max", f"Value {value} bigger than max of {spec.options['max']}",
                       spec.name, node_id, spec.name)
            return None
        choices = spec.choices
        if choices is not None and value not in choices:
            listed = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
            self.issue("value_not_in_list", "Value not in list", f"{spec.name}: {value!r} not in {listed}",
                       node_id, spec.name)
            return None
        return (value,)

    def custom_validation(self, node_id: str, cls: type, inputs: dict[str, Any], received: dict[str, Any]) -> None:
        """Call VALIDATE_INPUTS as ComfyUI 0.33's ``validate_inputs`` does: with every input the prompt gives the
        node that the function names (all of them for ``**kwargs``), a linked one as None (its value exists only
        at run time, where the node checks it), hidden inputs as before execution (PROMPT ``{}``, UNIQUE_ID the
        node id), ``input_types`` the linked outputs' types. A raise is ComfyUI's exception_during_validation;
        any answer but True is one custom_validation_failed issue (ComfyUI repeats it per input)."""
        function = getattr(cls, "VALIDATE_INPUTS", None)
        if function is None:
            return
        spec = inspect.getfullargspec(function)
        wanted = set(spec.args) if spec.varkw is None else None
        available = dict(_hidden_before_execution(cls, node_id))
        for spec_input in input_specs(cls):
            if spec_input.name in inputs:
                value = inputs[spec_input.name]
                available[spec_input.name] = None if isinstance(value, list) else value
        arguments = {k: v for k, v in available.items() if wanted is None or k in wanted}
        if wanted is not None and "input_types" in wanted:
            arguments["input_types"] = dict(received)
        try:
            result = function(**arguments)
        except Exception as exc:  # as ComfyUI: any raise is the node's validation error, not a crash
            self.issue("exception_during_validation", "Exception when validating node", f"{type(exc).__name__}: "
                       f"{exc}", node_id)
            return
        if result is not True:
            names = [k for k in arguments if k != "input_types"]
            self.issue("custom_validation_failed", "Custom validation failed for node",
                       ", ".join(names) + ("" if result is False else f" - {result}"), node_id,
                       next(iter(names), None))


def _hidden_before_execution(cls: type, node_id: str) -> dict[str, Any]:
    """Hidden inputs as ComfyUI's get_input_data gives them to VALIDATE_INPUTS (no prompt or extra data yet)."""
    known = {"PROMPT": {}, "UNIQUE_ID": node_id}
    return {name: known.get(kind) for name, kind in hidden_inputs(cls).items()}


def _title(node: dict) -> Any:
    meta = node.get("_meta")
    return meta.get("title") if isinstance(meta, dict) else None


def _node_shape_issue(node_id: str, node: Any, registry: Registry) -> ValidationIssue | None:
    """What makes a node unusable before its inputs are looked at: not an object, no usable class_type,
    ``inputs`` that is not an object."""
    if not isinstance(node, dict) or "class_type" not in node:
        title = _title(node) if isinstance(node, dict) else None
        return ValidationIssue("missing_node_type", f"Node '{title or f'ID #{node_id}'}' has no class_type. The "
                               "workflow may be corrupted or a custom node is missing.", f"Node ID '#{node_id}'",
                               node_id)
    class_type = node["class_type"]
    if not isinstance(class_type, str):
        return ValidationIssue("invalid_node", "class_type must be a node type name, found "
                               f"{json.dumps(class_type)[:60]}", f"Node ID '#{node_id}'", node_id, None)
    if class_type not in registry:
        return ValidationIssue("missing_node_type", f"Node '{_title(node) or class_type}' not found. The custom node "
                               "may not be installed.", f"Node ID '#{node_id}'", node_id, class_type)
    if node.get("inputs") is not None and not isinstance(node["inputs"], dict):
        return ValidationIssue("invalid_node", "'inputs' must be an object of input names to values or links, found "
                               f"{type(node['inputs']).__name__}", "", node_id, class_type)
    return None


def validate_prompt(prompt: Any, registry: Registry,
                    strict_inputs: Iterable[tuple[str, str]] = ()) -> ValidationResult:
    """Check node types, links, types, values and cycles of every node the outputs depend on.

    ``strict_inputs`` are (node id, input name) pairs set on the command line: an input name a
    node does not declare is an error there (ComfyUI silently ignores unknown inputs).
    """
    result = ValidationResult()
    if not isinstance(prompt, dict) or not prompt:
        result.issues.append(ValidationIssue("invalid_prompt", "Invalid prompt", "the workflow has no nodes"))
        return result
    for node_id, node in prompt.items():
        issue = _node_shape_issue(node_id, node, registry)
        if issue is not None:
            result.issues.append(issue)
    if result.issues:
        return result
    result.outputs = sorted((n for n, node in prompt.items() if getattr(registry[node["class_type"]],
                                                                        "OUTPUT_NODE", False) is True),
                            key=_node_sort_key)
    if not result.outputs:
        result.issues.append(ValidationIssue("prompt_no_outputs", "Prompt has no outputs", "add a Save Image, "
                                             "Preview Image or AdaIN Save Style node"))
        return result
    validator = _Validator(prompt, registry, strict_inputs)
    try:
        for output in result.outputs:
            validator.visit(output, [])
    except RecursionError:
        validator.issues.append(ValidationIssue("invalid_prompt", "Invalid prompt", f"the chain of nodes that "
                                                f"output {output} depends on is too long to check"))
    result.issues = validator.issues
    result.order = validator.order
    return result
