"""Widget inputs turned into linked inputs: ComfyUI calls VALIDATE_INPUTS with None for them, so every node
accepts None there and checks the value when it arrives; the runner calls VALIDATE_INPUTS as ComfyUI does."""
from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from adain_nodes.cli import main
from adain_nodes.errors import AdaINInputError
from adain_nodes.nodes import NODE_CLASS_MAPPINGS as N
from adain_nodes.runner import Folders, NodeExecutionError, Registry, execute_prompt, validate_prompt
from adain_nodes.runner.latent_nodes import save_latent_file
from conftest import random_image
from fixtures.linked_inputs.recording_nodes import RecordingKwargsNode, RecordingNode

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "linked_inputs"
COMFY_HOME = Path(os.environ.get("COMFY_HOME", "/opt/comfy"))


@pytest.fixture
def folders(tmp_path) -> Folders:
    (tmp_path / "input").mkdir()
    image = (random_image(1, 48, 40)[0].numpy() * 255).astype("uint8")
    Image.fromarray(image).save(tmp_path / "input" / "harness_test.png")  # the name the ComfyUI harness provides
    save_latent_file(torch.rand(1, 4, 6, 5), [tmp_path / "input" / "stand_in.latent"], None)
    return Folders(tmp_path / "input", tmp_path / "out")


def _validated_inputs(cls: type) -> list[str]:
    return [a for a in inspect.getfullargspec(cls.VALIDATE_INPUTS).args if a not in ("cls", "s", "input_types")]


def _classes_with_validate_inputs(folders: Folders) -> dict[str, type]:
    return {name: cls for name, cls in Registry(folders).classes.items() if hasattr(cls, "VALIDATE_INPUTS")}


def test_every_validate_inputs_takes_linked_inputs(model_dir, folders):
    """None is what ComfyUI passes for a link: accepted by every node of the pack and of the runner."""
    classes = _classes_with_validate_inputs(folders)
    assert {"AdaINSaveStyle", "AdaINLoadStyle", "LoadImage", "SaveImage", "PreviewImage", "LoadLatent"} <= set(classes)
    for name, cls in classes.items():
        assert cls.VALIDATE_INPUTS(**{arg: None for arg in _validated_inputs(cls)}) is True, name


# A literal value the node refuses at validation, and the message it must give for the same value linked.
BAD_VALUES = {
    ("AdaINSaveStyle", "name"): ("../outside", "not a path that leaves it"),
    ("AdaINLoadStyle", "preset"): ("gone.safetensors", "'gone.safetensors' was not found"),
    ("LoadImage", "image"): ("gone.png", "Invalid image file: gone.png"),
    ("SaveImage", "filename_prefix"): ("../outside", "outside the output folder"),
    ("LoadLatent", "latent"): ("gone.latent", "Invalid latent file: gone.latent"),
}


class AnyValue:
    """A node whose output has the any type '*', as many custom nodes have: ComfyUI lets it link into a list
    of choices (a STRING output cannot: ComfyUI's type check refuses it for LoadImage and LoadLatent)."""

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {})}}

    def run(self, value):
        return (value,)


def _registry(folders: Folders) -> Registry:
    registry = Registry(folders)
    registry.classes["AnyValue"] = AnyValue
    return registry


def _graph(class_type: str, name: str, value: str, linked: bool) -> dict:
    """The smallest workflow around ``class_type`` with ``name`` given ``value`` directly or through a String
    primitive (a link; for the core nodes' lists of files a '*' output), ending in an output node."""
    source = ["9", 0] if linked else value
    text = {"class_type": "AnyValue" if class_type in ("LoadImage", "LoadLatent") else "PrimitiveString",
            "inputs": {"value": value}}
    encoder = {"class_type": "AdaINEncoderLoader", "inputs": {"encoder_name": "vgg19_normalised_relu4_1.safetensors",
                                                              "precision": "fp32"}}
    image = {"class_type": "LoadImage", "inputs": {"image": "harness_test.png"}}
    stats = {"class_type": "AdaINStyleStats", "inputs": {"encoder": ["1", 0], "image": ["2", 0],
                                                         "average_batch": False}}
    graphs = {
        "AdaINSaveStyle": {"1": encoder, "2": image, "3": stats, "4": {"class_type": "AdaINSaveStyle", "inputs": {
            "style": ["3", 0], "name": source, "overwrite": True}}},
        "AdaINLoadStyle": {"4": {"class_type": "AdaINLoadStyle", "inputs": {"preset": source}},
                           "5": {"class_type": "AdaINSaveStyle", "inputs": {"style": ["4", 0], "name": "copy",
                                                                             "overwrite": True}}},
        "LoadImage": {"4": {"class_type": "LoadImage", "inputs": {"image": source}},
                      "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}},
        "SaveImage": {"2": image, "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                                               "filename_prefix": source}}},
        "LoadLatent": {"4": {"class_type": "LoadLatent", "inputs": {"latent": source}},
                       "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "l"}}},
    }
    graph = graphs[class_type]
    if linked:
        graph["9"] = text
    return graph


@pytest.mark.parametrize("class_type, name", sorted(BAD_VALUES))
def test_a_bad_linked_value_is_refused_when_it_arrives(class_type, name, model_dir, folders):
    """Validation lets the link through (its value does not exist yet); the node refuses the value it receives
    with the message its VALIDATE_INPUTS gives for the same value typed in."""
    value, message = BAD_VALUES[(class_type, name)]
    registry = _registry(folders)
    direct = validate_prompt(_graph(class_type, name, value, linked=False), registry)
    assert [(i.type, i.input_name) for i in direct.issues] == [("custom_validation_failed", name)]
    assert message in direct.issues[0].details
    prompt = _graph(class_type, name, value, linked=True)
    result = validate_prompt(prompt, registry)
    assert result.ok, result.message()
    with pytest.raises(NodeExecutionError) as error:
        execute_prompt(prompt, result.order, registry)
    assert error.value.node_id == "4" and message in str(error.value)
    assert isinstance(error.value.error, (AdaINInputError, ValueError))


@pytest.mark.parametrize("class_type, name", sorted(BAD_VALUES))
def test_a_good_linked_value_runs(class_type, name, model_dir, folders):
    good = {"AdaINSaveStyle": "linked/one", "AdaINLoadStyle": "kept.safetensors", "LoadImage": "harness_test.png",
            "SaveImage": "linked/picture", "LoadLatent": "stand_in.latent"}[class_type]
    if class_type == "AdaINLoadStyle":
        encoder = N["AdaINEncoderLoader"]().load("vgg19_normalised_relu4_1.safetensors", "fp32")[0]
        style = N["AdaINStyleStats"]().compute(encoder, random_image())[0]
        N["AdaINSaveStyle"]().save(style, "kept")
    registry = _registry(folders)
    prompt = _graph(class_type, name, good, linked=True)
    result = validate_prompt(prompt, registry)
    assert result.ok, result.message()
    outputs = execute_prompt(prompt, result.order, registry).outputs
    assert outputs["4"], class_type


def test_load_style_checks_the_type_of_its_link(model_dir, folders):
    """A preset name may come from text or a list of choices; anything else is named, not loaded."""
    prompt = _graph("AdaINLoadStyle", "preset", "x", linked=True)
    prompt["9"] = {"class_type": "LoadImage", "inputs": {"image": "harness_test.png"}}
    result = validate_prompt(prompt, Registry(folders))
    assert [(i.type, i.node_id, i.input_name) for i in result.issues] == [("custom_validation_failed", "4", "preset")]
    assert "not the IMAGE it is linked to" in result.issues[0].details


def test_a_linked_preset_is_always_loaded_anew():
    """ComfyUI calls IS_CHANGED before the run, with None for a link: the node must not be cached as unchanged."""
    first, second = N["AdaINLoadStyle"].IS_CHANGED(None), N["AdaINLoadStyle"].IS_CHANGED(None)
    assert first != second


def test_the_harness_fixtures_run_headless(model_dir, folders, tmp_path, capsys):
    """The two API workflows the real-ComfyUI check runs: a String primitive names the preset saved, then the
    preset loaded and the output prefix."""
    styles = tmp_path / "styles"
    for fixture in sorted(FIXTURES.glob("*_api.json")):
        code = main(["run", str(fixture), "--input-dir", str(folders.input_dir), "--output-dir",
                     str(folders.output_dir), "--styles-dir", str(styles)])
        assert code == 0, capsys.readouterr().out
    assert (styles / "linked_inputs" / "linked_style.safetensors").is_file()
    with Image.open(folders.output_dir / "linked_inputs" / "linked_prefix_00001_.png") as picture:
        assert picture.size == (40, 48)


# ----------------------------------------------------------------------------- the call, against ComfyUI's own
RECORDING_PROMPTS = [
    {"1": {"class_type": "PrimitiveString", "inputs": {"value": "v"}},
     "2": {"class_type": "RecordingNode", "inputs": {"text": ["1", 0], "number": "7", "choice": ["1", 0],
                                                      "flag": 1, "ignored": 3}}},
    {"1": {"class_type": "PrimitiveString", "inputs": {"value": "v"}},
     "2": {"class_type": "RecordingNode", "inputs": {"text": "t", "number": 99, "choice": "z", "flag": False,
                                                      "extra": ["1", 0]}}},
    {"1": {"class_type": "PrimitiveString", "inputs": {"value": "v"}},
     "2": {"class_type": "RecordingKwargsNode", "inputs": {"text": ["1", 0], "number": 3, "choice": "a",
                                                            "flag": True}}},
]

COMFY_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    sys.argv = sys.argv[:1] + ["--cpu"]
    sys.path.insert(0, ".")
    import comfy.options
    comfy.options.enable_args_parsing()
    import nodes, execution
    from comfy_extras.nodes_primitive import String
    sys.path.insert(0, sys.stdin.readline().strip())
    import recording_nodes as t
    nodes.NODE_CLASS_MAPPINGS.update(RecordingNode=t.RecordingNode, RecordingKwargsNode=t.RecordingKwargsNode,
                                     PrimitiveString=String)
    calls = []
    for prompt in json.loads(sys.stdin.read()):
        t.RecordingNode.calls.clear(); t.RecordingKwargsNode.calls.clear()
        asyncio.run(execution.validate_inputs("p", prompt, "2", {}))
        calls.append(t.RecordingNode.calls + t.RecordingKwargsNode.calls)
    print("CALLS", json.dumps(calls))
""")


def _runner_calls(folders: Folders) -> list[list[dict]]:
    registry = Registry(folders)
    registry.classes.update(RecordingNode=RecordingNode, RecordingKwargsNode=RecordingKwargsNode)
    calls = []
    for prompt in copy.deepcopy(RECORDING_PROMPTS):
        RecordingNode.calls.clear()
        RecordingKwargsNode.calls.clear()
        validate_prompt(prompt, registry)
        calls.append(RecordingNode.calls + RecordingKwargsNode.calls)
    return json.loads(json.dumps(calls))


def test_runner_calls_validate_inputs_with_what_it_gets(folders):
    """What ComfyUI 0.33's validate_inputs passes (read from its execution.py): None for links, converted
    literals, only the declared inputs the function names (all for **kwargs), input_types of the links,
    hidden inputs as before a run."""
    calls = _runner_calls(folders)
    assert calls[0] == [{"text": None, "number": 7, "choice": None, "input_types": {"text": "STRING",
                         "choice": "STRING"}, "unique_id": "2", "prompt": {}, "extra": None}]
    assert calls[1] == [{"text": "t", "number": 99, "choice": "z", "input_types": {"extra": "STRING"},
                         "unique_id": "2", "prompt": {}, "extra": None}]
    assert calls[2] == [{"text": None, "number": 3, "choice": "a", "flag": True, "unique_id": "2", "prompt": {},
                         "extra_pnginfo": None}]


def test_runner_calls_validate_inputs_as_the_real_comfyui_does(folders):
    """The same prompts through the real ComfyUI's execution.validate_inputs, where it is installed."""
    python, comfy = COMFY_HOME / "venv" / "bin" / "python", COMFY_HOME / "ComfyUI"
    if not (python.exists() and (comfy / "execution.py").exists()):
        pytest.skip(f"no ComfyUI at {COMFY_HOME} (set COMFY_HOME to a folder with ComfyUI/ and venv/)")
    stdin = str(FIXTURES) + "\n" + json.dumps(RECORDING_PROMPTS)
    done = subprocess.run([str(python), "-c", COMFY_SCRIPT], cwd=comfy, input=stdin, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": ""})
    line = [x for x in done.stdout.splitlines() if x.startswith("CALLS ")]
    assert done.returncode == 0 and line, done.stderr[-3000:]
    assert json.loads(line[0][len("CALLS "):]) == _runner_calls(folders)
