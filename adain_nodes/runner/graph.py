"""Workflow files: loading, format detection and the editor's UI -> API conversion.

ComfyUI has two formats. The editor saves the *UI format* (nodes with positions and
``widgets_values``, a link table, groups, notes); the server executes the *API format*
(``{node_id: {"class_type", "inputs", "_meta"}}``), which the editor makes with
``graphToPrompt``. ``ui_to_api`` repeats that function's rules so a saved editor workflow runs
headless exactly as the Run button would run it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .registry import VIRTUAL_NODES, Registry, editor_widgets

log = logging.getLogger(__name__)

MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


class WorkflowError(ValueError):
    """The file is not a workflow this runner can read."""


class UnreadableWorkflow(WorkflowError):
    """The file cannot be read as JSON (or a PNG's workflow) at all, or is no workflow in either format."""


@dataclass
class Workflow:
    """An API prompt ready to validate, with the editor workflow it came from (embedded in outputs)."""

    prompt: dict[str, dict]
    ui: dict | None
    format: str  # "api" or "ui"
    source: str = ""


# Workflows nest a few levels (widget values hold small lists and dicts); far deeper is not a workflow and
# would exhaust the recursion of the JSON reader and of everything that walks the data after it.
MAX_NESTING = 100


def detect_format(data: Any) -> str:
    """'ui' (editor save), 'api' (prompt) or 'unknown'."""
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        return "ui"
    if isinstance(data, dict) and any(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return "api"
    return "unknown"


def _nesting(data: Any) -> int:
    """Depth of nested lists and dicts, found without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:
                stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _parse_json(text: str, where: str) -> Any:
    too_deep = UnreadableWorkflow(f"{where}: nested more than {MAX_NESTING} levels deep; this is not a workflow")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableWorkflow(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise too_deep from None
    if _nesting(data) > MAX_NESTING:
        raise too_deep
    return data


def _read_json(path: Path) -> Any:
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as img:
                text = dict(getattr(img, "text", {}) or {})
        except Exception as exc:  # Pillow raises many types for broken chunks; none may escape as a crash
            raise UnreadableWorkflow(f"{path}: cannot read this PNG's text chunks ({type(exc).__name__}: "
                                     f"{exc})") from None
        chosen = text.get("workflow") or text.get("prompt")
        if not chosen:
            raise UnreadableWorkflow(f"{path}: this PNG carries no ComfyUI workflow (no 'workflow' or 'prompt' text "
                                     "chunk)")
        return _parse_json(chosen, f"{path}: the PNG's {'workflow' if text.get('workflow') else 'prompt'} chunk")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnreadableWorkflow(f"{path}: cannot read the workflow ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableWorkflow(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                            "save the workflow as UTF-8 JSON") from None
    return _parse_json(text, str(path))


def load_workflow(path: str | Path, registry: Registry) -> Workflow:
    """Read an API or UI workflow (JSON, a POST /prompt body, or a PNG saved by ComfyUI) as an API prompt.

    The file's structure is checked on the way (``WorkflowError`` naming the node and the problem), so
    nothing malformed reaches validation or execution."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableWorkflow(f"{path}: no such workflow file")
    data = _read_json(path)
    ui = None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and detect_format(data["prompt"]) == "api":
        extra = data.get("extra_data")
        pnginfo = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
        ui = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
        data = data["prompt"]
    kind = detect_format(data)
    if kind == "ui":
        check_ui(data)
        return Workflow(ui_to_api(data, registry), data, "ui", str(path))
    if kind == "api":
        return Workflow(json.loads(json.dumps(data)), ui if isinstance(ui, dict) else None, "api", str(path))
    raise UnreadableWorkflow(f"{path}: neither an editor (UI) workflow with 'nodes' and 'links' nor an API prompt "
                        "of {node_id: {class_type, inputs}}")


_LINK_FIELDS = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")


def _node_label(node: Any, index: int) -> str:
    node_id = node.get("id") if isinstance(node, dict) else None
    return f"node {node_id}" if isinstance(node_id, (int, str)) else f"node #{index + 1} of 'nodes'"


def check_ui(ui: dict) -> None:
    """The editor format's structure, as ``ui_to_api`` relies on it: one line naming the node and the problem."""
    def fail(where: str, problem: str) -> None:
        raise WorkflowError(f"editor workflow {where}: {problem}")

    if not isinstance(ui.get("nodes"), list):
        fail("'nodes'", f"must be a list of nodes, found {type(ui.get('nodes')).__name__}")
    if not isinstance(ui.get("links") or [], list):
        fail("'links'", f"must be a list, found {type(ui.get('links')).__name__}")
    definitions = ui.get("definitions")
    if definitions is not None and not isinstance(definitions, dict):
        fail("'definitions'", "must be an object")
    seen = set()
    for index, node in enumerate(ui["nodes"]):
        where = _node_label(node, index)
        if not isinstance(node, dict):
            fail(where, f"must be an object, found {type(node).__name__}")
        node_id = node.get("id")
        if isinstance(node_id, bool) or not isinstance(node_id, (int, str)):
            fail(where, "has no id (a number)" if node_id is None else f"id {node_id!r} is not a number")
        if node_id in seen:
            fail(where, "its id is used by another node too")
        seen.add(node_id)
        if not isinstance(node.get("type"), str):
            fail(where, f"type {node.get('type')!r} is not a node type name")
        for key, kind in (("title", str), ("widgets_values", (list, dict)), ("inputs", list), ("outputs", list)):
            if node.get(key) is not None and not isinstance(node[key], kind):
                expected = "list" if kind is list else "string" if kind is str else "list or object"
                fail(where, f"'{key}' must be a {expected}, found {type(node[key]).__name__}")
        for key in ("mode", "order"):
            if node.get(key) is not None and (isinstance(node[key], bool) or not isinstance(node[key], (int, float))):
                fail(where, f"'{key}' must be a number, found {node[key]!r}")
        for slot in node.get("inputs") or []:
            if not isinstance(slot, dict) or not isinstance(slot.get("name"), str):
                fail(where, f"input {slot!r} must be an object with a 'name'")
            link = slot.get("link")
            if link is not None and (isinstance(link, bool) or not isinstance(link, (int, str))):
                fail(where, f"input '{slot['name']}' has link {link!r}, not a link id")
    for index, link in enumerate(ui.get("links") or []):
        if isinstance(link, dict):
            values = [link.get(k) for k in _LINK_FIELDS[:5]]
        elif isinstance(link, list) and len(link) == len(_LINK_FIELDS):
            values = link[:5]
        else:
            fail(f"link #{index + 1}", f"must be [id, origin_id, origin_slot, target_id, target_slot, type] or an "
                                       f"object with those keys, found {json.dumps(link)[:80]}")
        for name, value in zip(_LINK_FIELDS, values):
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                fail(f"link #{index + 1}", f"'{name}' is {value!r}, not a number")
        if isinstance(values[2], str):
            fail(f"link {values[0]}", f"'origin_slot' is {values[2]!r}, not a number")


def _links_by_id(ui: dict) -> dict[int, dict]:
    """The link table as {id: {origin_id, origin_slot, target_id, target_slot, type}} (0.4 arrays or 1.0 objects)."""
    table = {}
    for link in ui.get("links") or []:
        if isinstance(link, dict):
            entry = {k: link.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")}
        else:
            entry = dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), link))
        table[entry["id"]] = entry
    return table


def _resolve_link(link_id: Any, target_type: Any, nodes: dict, links: dict) -> tuple[str, Any] | None:
    """Follow a link through reroutes and bypassed nodes as the editor does.

    Returns ("link", [origin_id, slot]), ("value", v) for a primitive node, or None when the
    input ends up unconnected (a bypassed node without a matching input, a dangling link).
    """
    seen = set()
    while link_id is not None and link_id not in seen:
        seen.add(link_id)
        link = links.get(link_id)
        if link is None:
            return None
        origin = nodes.get(link["origin_id"])
        if origin is None:
            return None
        if origin.get("type") == "Reroute":
            link_id = ((origin.get("inputs") or [{}])[0]).get("link")
            continue
        if origin.get("type") == "PrimitiveNode":
            values = origin.get("widgets_values")
            return ("value", values[0]) if isinstance(values, list) and values else None
        if origin.get("mode") == MODE_BYPASS:
            inputs = origin.get("inputs") or []
            slot = link["origin_slot"]
            if slot < len(inputs) and inputs[slot].get("type") == target_type and inputs[slot].get("link") is not None:
                link_id = inputs[slot]["link"]
                continue
            matches = [i for i in inputs if i.get("type") == target_type and i.get("link") is not None]
            if not matches:
                return None
            link_id = matches[0]["link"]
            continue
        return ("link", [str(origin["id"]), int(link["origin_slot"])])
    return None


def _wrap(value: Any) -> Any:
    """Lists are links in the API format; the editor wraps list-valued widgets."""
    return {"__value__": value} if isinstance(value, list) else value


def ui_to_api(ui: dict, registry: Registry) -> dict[str, dict]:
    """The editor's graphToPrompt: widgets by position, links resolved, virtual/muted/bypassed nodes dropped."""
    if (ui.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported by the headless runner; "
                            "unpack the subgraphs in the editor first")
    nodes = {n["id"]: n for n in ui.get("nodes") or []}
    links = _links_by_id(ui)
    prompt: dict[str, dict] = {}
    for node in sorted(nodes.values(), key=lambda n: (n.get("order") or 0, isinstance(n["id"], str), n["id"])):
        class_type = node.get("type")
        if class_type in VIRTUAL_NODES or node.get("mode", MODE_ALWAYS) in (MODE_NEVER, MODE_BYPASS):
            continue
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if class_type in registry:
            widgets = list(editor_widgets(registry[class_type]))
            if isinstance(values, dict):
                inputs.update({name: _wrap(values[name]) for name, sent in widgets if sent and name in values})
            elif isinstance(values, list):
                inputs.update({name: _wrap(v) for (name, sent), v in zip(widgets, values) if sent})
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            resolved = _resolve_link(slot["link"], slot.get("type"), nodes, links)
            if resolved is not None:
                inputs[slot["name"]] = _wrap(resolved[1]) if resolved[0] == "value" else resolved[1]
        title = node.get("title") or registry.title(class_type)
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}
    for entry in prompt.values():  # inputs from muted or missing nodes are dropped, as the editor does
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and str(value[0]) not in prompt:
                del entry["inputs"][name]
    return prompt


def find_node(prompt: dict[str, dict], key: str) -> str:
    """A node id from an id, a unique title or a unique class type."""
    if key in prompt:
        return key
    for field in ("title", "class_type"):
        hits = [nid for nid, n in prompt.items() if isinstance(n, dict) and (
            (n.get("_meta") if isinstance(n.get("_meta"), dict) else {}).get("title") if field == "title"
            else n.get("class_type")) == key]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise WorkflowError(f"--set {key}: {len(hits)} nodes match ({', '.join(hits)}); use the node id")
    raise WorkflowError(f"--set {key}: no node with that id, title or class type (ids: {', '.join(prompt)})")


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, quoted strings, lists), the raw text otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(prompt: dict[str, dict], assignments: list[str]) -> list[tuple[str, str, Any]]:
    """Apply ``NODE.INPUT=VALUE`` assignments (NODE: id, title or class type). Returns what was set."""
    done = []
    for text in assignments:
        target, sep, value = text.partition("=")
        node_key, dot, name = target.rpartition(".")
        if not sep or not dot or not node_key or not name:
            raise WorkflowError(f"--set {text!r}: expected NODE.INPUT=VALUE, for example 5.alpha=0.5")
        node_id = find_node(prompt, node_key)
        node = prompt[node_id]
        if not isinstance(node, dict) or not isinstance(node.setdefault("inputs", {}), dict):
            raise WorkflowError(f"--set {text!r}: node {node_id} is malformed (no object of inputs to set)")
        node["inputs"][name] = parse_value(value)
        done.append((node_id, name, prompt[node_id]["inputs"][name]))
    return done
