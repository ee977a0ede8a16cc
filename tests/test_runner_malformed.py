"""Malformed workflows get one clear line, never a traceback, and nothing runs; valid ones run to the end."""
from __future__ import annotations

import copy
import json
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adain_nodes.cli import main
from test_runner import EXAMPLES, api_prompt, inputs  # noqa: F401


def _run(tmp_path: Path, inputs: Path, workflow_file: Path, *extra: str) -> int:
    return main(["run", str(workflow_file), "--input-dir", str(inputs), "--output-dir", str(tmp_path / "out"),
                 *extra])


def _write(tmp_path: Path, data, name: str = "wf.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _message(capsys) -> str:
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("workflow ")]
    return "\n".join(lines)


# What follows the keyword's NUL in each text chunk type before the text: zTXt a compression method, iTXt
# compression flag and method, language tag and translated keyword.
_TEXT_HEADERS = {b"tEXt": b"", b"zTXt": b"\0", b"iTXt": b"\1\0\0\0"}


def _png_with_chunk(path: Path, keyword: bytes, text: bytes, kind: bytes = b"tEXt") -> Path:
    from PIL import Image

    Image.new("RGB", (4, 4)).save(path)
    data = path.read_bytes()
    body = keyword + b"\0" + _TEXT_HEADERS[kind] + text
    crc = zlib.crc32(kind + body)
    chunk = len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + chunk + data[end:])
    return path


UNREADABLE = {
    "not UTF-8": (lambda p: p.write_bytes(json.dumps(api_prompt()).encode().replace(b"content", b"c\xf6ntent")),
                  "not UTF-8 text"),
    "nested too deep for the reader": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "nested more than"),
    "nested deeper than a workflow": (lambda p: p.write_text('{"1": ' + "[" * 500 + "]" * 500 + "}"),
                                      "nested more than"),
    "not JSON": (lambda p: p.write_text("{'1': nope"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_files_get_one_line(case, model_dir, inputs, tmp_path, capsys):
    make, expected = UNREADABLE[case]
    path = tmp_path / "wf.json"
    make(path)
    assert _run(tmp_path, inputs, path) == 2
    message = _message(capsys)
    assert message.startswith("error: ") and expected in message and "\n" not in message


@pytest.mark.parametrize("kind,text,expected", [
    (b"zTXt", zlib.compress(b" " * 3_000_000), "cannot read this PNG's text chunks"),  # beyond Pillow's limit
    (b"iTXt", b"\x78\x9c not deflate", "no ComfyUI workflow"),  # Pillow drops the broken chunk
    (b"zTXt", b"\x78\x9c definitely not deflate", "no ComfyUI workflow"),
    (b"tEXt", b'{"1": {"class_type": ', "not valid JSON"),
    (b"tEXt", b"\xff\xfe not text", "not valid JSON"),
])
def test_broken_png_text_chunks_get_one_line(kind, text, expected, model_dir, inputs, tmp_path, capsys):
    path = _png_with_chunk(tmp_path / "wf.png", b"prompt", text, kind)
    assert _run(tmp_path, inputs, path) == 2
    message = _message(capsys)
    assert expected in message and "\n" not in message


def _api(change) -> dict:
    prompt = api_prompt()
    change(prompt)
    return prompt


def _ui(change) -> dict:
    ui = json.loads((EXAMPLES / "01_style_transfer.json").read_text())
    change(ui)
    return ui


MALFORMED = {
    "class_type a list": (lambda: _api(lambda p: p["5"].update(class_type=["AdaINStyleTransfer"])),
                          "node 5", "class_type must be a node type name"),
    "class_type a number": (lambda: _api(lambda p: p["6"].update(class_type=7)), "node 6", "class_type"),
    "inputs a list": (lambda: _api(lambda p: p["5"].update(inputs=[["1", 0]])), "node 5", "'inputs' must be an object"),
    "inputs a string": (lambda: _api(lambda p: p["3"].update(inputs="content.png")), "node 3", "'inputs' must be"),
    "meta a string": (lambda: _api(lambda p: (p["5"].update(_meta="x"), p["5"].update(class_type="Nope"))),
                      "Nope", "not found"),
    "undeclared link to a missing node": (lambda: _api(lambda p: p["5"]["inputs"].update(extra=["99", 0])),
                                          "node 5", "Linked node does not exist"),
    "undeclared link to a missing output": (lambda: _api(lambda p: p["6"]["inputs"].update(extra=["1", 5])),
                                            "node 6", "Linked output does not exist"),
    "link of length 3": (lambda: _api(lambda p: p["5"]["inputs"].update(style_image=["4", 0, 0])),
                         "node 5", "length-2 list"),
    "link to a list id": (lambda: _api(lambda p: p["5"]["inputs"].update(style_image=[["4"], 0])),
                          "node 5", "node id must be"),
    "prefix leaving the output folder": (lambda: _api(lambda p: p["6"]["inputs"].update(filename_prefix="../../x")),
                                         "node 6", "outside the output folder"),
    "absolute prefix": (lambda: _api(lambda p: p["6"]["inputs"].update(filename_prefix="/tmp/x")),
                        "node 6", "outside the output folder"),
    "value too large for a number": (lambda: _api(lambda p: p["5"]["inputs"].update(tile_size=1e400)),
                                     "node 5", "Failed to convert"),
    "UI node without id": (lambda: _ui(lambda u: u["nodes"][0].pop("id")), "node #1", "has no id"),
    "UI node id a list": (lambda: _ui(lambda u: u["nodes"][1].update(id=[1])), "node #2", "is not a number"),
    "UI node not an object": (lambda: _ui(lambda u: u["nodes"].append("node")), "node #", "must be an object"),
    "UI link too short": (lambda: _ui(lambda u: u["links"][0].pop()), "link #1", "must be [id, origin_id"),
    "UI link id a list": (lambda: _ui(lambda u: u["links"][0].__setitem__(1, [1])), "link #1", "'origin_id'"),
    "UI nodes not a list": (lambda: _ui(lambda u: u.update(nodes={"1": {}})), "'nodes'", "must be a list"),
    "UI inputs not a list": (lambda: _ui(lambda u: u["nodes"][0].update(inputs={"a": 1})), "node", "'inputs' must"),
    "UI order a string": (lambda: _ui(lambda u: u["nodes"][0].update(order="first")), "node", "'order' must be"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("validate_only", [True, False], ids=["validate-only", "run"])
def test_malformed_workflows_fail_validation_naming_node_and_problem(case, validate_only, model_dir, inputs,
                                                                     tmp_path, capsys):
    make, where, problem = MALFORMED[case]
    path = _write(tmp_path, make())
    code = _run(tmp_path, inputs, path, *(["--validate-only"] if validate_only else []))
    message = _message(capsys)
    assert code == 1, message
    assert where in message and problem in message, message
    assert "Error while executing" not in message and not (tmp_path / "out").exists()


def test_undeclared_literal_input_is_ignored_as_in_comfyui(model_dir, inputs, tmp_path, capsys):
    path = _write(tmp_path, _api(lambda p: p["5"]["inputs"].update(not_an_input=3)))
    assert _run(tmp_path, inputs, path) == 0, capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("t_*.png"))) == 1


def test_save_style_name_leaving_its_folder_is_a_validation_error(model_dir, inputs, tmp_path, capsys):
    prompt = api_prompt()
    prompt["7"] = {"class_type": "AdaINStyleStats", "inputs": {"encoder": ["1", 0], "image": ["4", 0]}}
    prompt["8"] = {"class_type": "AdaINSaveStyle", "inputs": {"style": ["7", 0], "name": "../../escape",
                                                              "overwrite": True}}
    assert _run(tmp_path, inputs, _write(tmp_path, prompt), "--validate-only") == 1
    message = _message(capsys)
    assert "node 8 (AdaINSaveStyle)" in message and "leaves" in message or "not a path" in message


# ----------------------------------------------------------------------------------------------------- fuzz
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2048) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6) | st.sampled_from(["1", "5", "99", "content.png", "IMAGE", "../x", "off"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


def _places(data, path=()) -> list[tuple]:
    """Every (container path, key) in the data, for a mutation to pick from."""
    found = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found.append(path + (key,))
        found.extend(_places(value, path + (key,)))
    return found


def _mutate(data, draw) -> object:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        places = _places(data)
        if not places:
            break
        *parent_path, key = draw(st.sampled_from(places))
        parent = data
        for step in parent_path:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "inputs", "class_type", "_meta", "id", "links"]))] = \
                draw(JSON_VALUES)
        else:
            parent[key] = draw(JSON_VALUES)
    return data


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(data=st.data())
def test_fuzzed_api_workflows_validate_cleanly_and_valid_ones_run(data, model_dir, inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    path = _write(folder, _mutate(api_prompt(), data.draw))
    checked = _run(folder, inputs, path, "--validate-only")  # raising here is the failure
    assert checked in (0, 1)
    if checked == 0:
        assert _run(folder, inputs, path) == 0, "validated, then failed when run"


@FUZZ
@given(data=st.data())
def test_fuzzed_editor_workflows_validate_cleanly(data, model_dir, tmp_path_factory):
    ui = json.loads((EXAMPLES / "01_style_transfer.json").read_text())
    mutated = {**ui, "nodes": _mutate(ui["nodes"], data.draw), "links": _mutate(ui["links"], data.draw)}
    folder = tmp_path_factory.mktemp("fuzz_ui")
    assert _run(folder, EXAMPLES / "input", _write(folder, mutated), "--validate-only") in (0, 1)
