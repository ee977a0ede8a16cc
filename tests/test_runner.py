"""The headless runner: UI -> API rules, validation errors one by one, core image nodes, CLI behaviour."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adain_nodes.cli import main
from adain_nodes.runner import Folders, Registry, ui_to_api, validate_prompt
from adain_nodes.runner.core_nodes import load_image_file

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ENC, DEC = "vgg19_normalised_relu4_1.safetensors", "adain_decoder_relu4_1.safetensors"


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "input"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("content.png", "style.png"):
        low = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
        Image.fromarray(low).resize((40, 32), Image.Resampling.BILINEAR).save(folder / name)
    return folder


def api_prompt() -> dict:
    """A minimal valid one-node transfer in API format (widgets not named here get their defaults)."""
    prompt = {
        "1": {"class_type": "AdaINEncoderLoader", "inputs": {"encoder_name": ENC}},
        "2": {"class_type": "AdaINDecoderLoader", "inputs": {"decoder_name": DEC}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "content.png"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "style.png"}},
        "5": {"class_type": "AdaINStyleTransfer", "inputs": {"encoder": ["1", 0], "decoder": ["2", 0],
                                                             "content_image": ["3", 0], "style_image": ["4", 0],
                                                             "alpha": 1.0, "preserve_color": "off"}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "t"}},
    }
    from adain_nodes.nodes import NODE_CLASS_MAPPINGS
    from adain_nodes.runner.registry import input_specs

    for node in prompt.values():
        cls = NODE_CLASS_MAPPINGS.get(node["class_type"])
        for spec in input_specs(cls) if cls else []:
            if spec.is_widget and spec.required and spec.name not in node["inputs"] and "default" in spec.options:
                node["inputs"][spec.name] = spec.options["default"]
    return prompt


def registry(inputs: Path, tmp_path: Path) -> Registry:
    return Registry(Folders(inputs, tmp_path / "out"))


def run_cli(tmp_path: Path, inputs: Path, prompt: dict, *extra: str) -> tuple[int, str, Path]:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(prompt))
    out = tmp_path / "out"
    return main(["run", str(path), "--input-dir", str(inputs), "--output-dir", str(out), *extra]), "", out


# ------------------------------------------------------------------------------------------- validation
def _broken(change) -> dict:
    prompt = api_prompt()
    change(prompt)
    return prompt


CASES = {
    "missing_node_type": (lambda p: p["5"].update(class_type="NoSuchNode"), "5", None,
                          "Node 'NoSuchNode' not found. The custom node may not be installed."),
    "required_input_missing": (lambda p: p["5"]["inputs"].pop("style_image"), "5", "style_image",
                               "Required input is missing"),
    "linked_node_missing": (lambda p: p["5"]["inputs"].update(style_image=["99", 0]), "5", "style_image",
                            "Linked node does not exist"),
    "linked_output_missing": (lambda p: p["5"]["inputs"].update(style_image=["4", 2]), "5", "style_image",
                              "Linked output does not exist"),
    "return_type_mismatch": (lambda p: p["5"]["inputs"].update(style_image=["4", 1]), "5", "style_image",
                             "Return type mismatch between linked nodes"),
    "value_bigger_than_max": (lambda p: p["5"]["inputs"].update(alpha=1.5), "5", "alpha",
                              "Value 1.5 bigger than max of 1.0"),
    "value_smaller_than_min": (lambda p: p["5"]["inputs"].update(alpha=-0.5), "5", "alpha",
                               "Value -0.5 smaller than min of 0.0"),
    "value_not_in_list": (lambda p: p["5"]["inputs"].update(preserve_color="sepia"), "5", "preserve_color",
                          "Value not in list"),
    "invalid_input_type": (lambda p: p["5"]["inputs"].update(alpha="strong"), "5", "alpha",
                           "Failed to convert an input value to a FLOAT value"),
    "link_required": (lambda p: p["5"]["inputs"].update(style_image="style.png"), "5", "style_image",
                      "Input needs a link"),
    "custom_validation_failed": (lambda p: p["4"]["inputs"].update(image="../../etc/passwd"), "4", "image",
                                 "Custom validation failed for node"),
    "dependency_cycle": (lambda p: (p.__setitem__("7", {"class_type": "AdaINMatchColor", "inputs": {
        "image": ["8", 0], "reference": ["3", 0]}}), p.__setitem__("8", {"class_type": "AdaINMatchColor", "inputs": {
            "image": ["7", 0], "reference": ["3", 0]}}), p["5"]["inputs"].update(style_image=["8", 0])), "8", None,
        "Dependency cycle detected"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_validation_error_is_reported_and_nothing_runs(kind, model_dir, inputs, tmp_path, capsys):
    change, node_id, input_name, message = CASES[kind]
    prompt = _broken(change)
    result = validate_prompt(copy.deepcopy(prompt), registry(inputs, tmp_path))
    assert not result.ok
    issue = result.issues[0]
    assert (issue.type, issue.node_id, issue.input_name, issue.message) == (kind, node_id, input_name, message)
    code, _, out = run_cli(tmp_path, inputs, prompt)
    printed = capsys.readouterr().out
    assert code == 1 and "nothing was executed" in printed and message in printed
    assert not out.exists()


def test_error_text_reads_like_comfyui(model_dir, inputs, tmp_path):
    prompt = _broken(lambda p: p["5"]["inputs"].update(alpha=1.5))
    result = validate_prompt(prompt, registry(inputs, tmp_path))
    assert result.message() == ("Prompt outputs failed validation:\n"
                                "  node 5 (AdaINStyleTransfer) input 'alpha': Value 1.5 bigger than max of 1.0")


def test_all_errors_are_collected(model_dir, inputs, tmp_path):
    prompt = _broken(lambda p: (p["5"]["inputs"].update(alpha=2), p["6"]["inputs"].pop("filename_prefix")))
    kinds = {(i.node_id, i.type) for i in validate_prompt(prompt, registry(inputs, tmp_path)).issues}
    assert kinds == {("5", "value_bigger_than_max"), ("6", "required_input_missing")}


def test_missing_image_file_names_the_folder_and_the_option(model_dir, inputs, tmp_path, capsys):
    """As in ComfyUI, LoadImage's own check reports it (not 'value not in list'), saying where to put it."""
    prompt = api_prompt()
    reg = registry(inputs, tmp_path)
    (inputs / "content.png").unlink()
    issues = validate_prompt(copy.deepcopy(prompt), reg).issues
    assert [(i.type, i.node_id, i.input_name) for i in issues] == [("custom_validation_failed", "3", "image")]
    assert "Invalid image file: content.png" in issues[0].details
    assert str(inputs.resolve()) in issues[0].details and "--input-dir" in issues[0].details
    code, _, _ = run_cli(tmp_path, inputs, prompt)
    printed = capsys.readouterr().out
    assert code == 1 and str(inputs.resolve()) in printed and "--input-dir" in printed


def test_image_in_a_subfolder_of_the_input_folder_is_valid(model_dir, inputs, tmp_path):
    """Like ComfyUI, an existing file the list does not show (a subfolder) passes LoadImage's own check."""
    (inputs / "sub").mkdir()
    (inputs / "content.png").rename(inputs / "sub" / "content.png")
    prompt = api_prompt()
    prompt["3"]["inputs"]["image"] = "sub/content.png"
    assert validate_prompt(prompt, registry(inputs, tmp_path)).ok


def test_missing_preset_names_the_styles_folder_and_the_option(model_dir, inputs, tmp_path, capsys):
    prompt = {"1": {"class_type": "AdaINLoadStyle", "inputs": {"preset": "starry.safetensors"}},
              "2": {"class_type": "AdaINSaveStyle", "inputs": {"style": ["1", 0], "name": "copy", "overwrite": True}}}
    styles = tmp_path / "styles"
    issues = validate_prompt(copy.deepcopy(prompt), registry(inputs, tmp_path)).issues
    assert [(i.type, i.node_id, i.input_name) for i in issues] == [("custom_validation_failed", "1", "preset")]
    assert "'starry.safetensors' was not found" in issues[0].details and str(styles) in issues[0].details
    code, _, _ = run_cli(tmp_path, inputs, prompt)
    printed = capsys.readouterr().out
    assert code == 1 and str(styles) in printed and "--styles-dir" in printed and "nothing was executed" in printed


def test_no_outputs(model_dir, inputs, tmp_path):
    prompt = api_prompt()
    del prompt["6"]
    result = validate_prompt(prompt, registry(inputs, tmp_path))
    assert result.issues[0].type == "prompt_no_outputs"


# ------------------------------------------------------------------------------------------- execution
def test_runs_and_writes_numbered_pngs_with_metadata(model_dir, inputs, tmp_path, capsys):
    for _ in range(2):
        code, _, out = run_cli(tmp_path, inputs, api_prompt())
        assert code == 0
    printed = capsys.readouterr().out
    assert "[5/6] node 5 AdaINStyleTransfer" in printed and "wrote" in printed
    assert sorted(p.name for p in out.iterdir()) == ["t_00001_.png", "t_00002_.png"]
    with Image.open(out / "t_00001_.png") as img:
        assert img.size == (40, 32)
        assert json.loads(img.text["prompt"])["5"]["inputs"]["alpha"] == 1.0


def test_set_overrides_by_id_title_and_class(model_dir, inputs, tmp_path):
    code, _, out = run_cli(tmp_path, inputs, api_prompt(), "--set", "5.alpha=0.0",
                           "--set", "SaveImage.filename_prefix=z")
    assert code == 0
    with Image.open(out / "z_00001_.png") as img:
        assert json.loads(img.text["prompt"])["5"]["inputs"]["alpha"] == 0.0


def test_set_unknown_input_is_an_error(model_dir, inputs, tmp_path, capsys):
    code, _, out = run_cli(tmp_path, inputs, api_prompt(), "--set", "5.alpah=0.5")
    assert code == 1 and "Unknown input" in capsys.readouterr().out and not out.exists()


def test_alpha_zero_reconstructs_and_alpha_one_differs(model_dir, inputs, tmp_path):
    outs = []
    for alpha in (0.0, 1.0):
        code, _, out = run_cli(tmp_path, inputs, api_prompt(), "--set", f"5.alpha={alpha}",
                               "--set", f"6.filename_prefix=a{int(alpha)}")
        assert code == 0
        outs.append(np.asarray(Image.open(out / f"a{int(alpha)}_00001_.png"), float))
    assert np.abs(outs[0] - outs[1]).mean() > 1.0


def test_node_error_names_the_node(private_model_dir, inputs, tmp_path, capsys):
    (private_model_dir / DEC).unlink()  # a link to the session's file: replace it, never write through it
    (private_model_dir / DEC).write_bytes(b"not a safetensors file")
    code, _, _ = run_cli(tmp_path, inputs, api_prompt())
    assert code == 1 and "Error while executing node 2 (AdaINDecoderLoader)" in capsys.readouterr().out


def test_unreadable_workflow_exit_code(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{not json")
    assert main(["run", str(tmp_path / "x.json")]) == 2


# ------------------------------------------------------------------------------------------- core nodes
def test_load_image_rgba_mask_exif_and_frames(tmp_path):
    rgba = np.zeros((6, 10, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :5, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    image, mask = load_image_file(tmp_path / "m.png")
    assert image.shape == (1, 6, 10, 3) and mask.shape == (1, 6, 10)
    assert mask[0, :, :5].min() == 1.0 and mask[0, :, 5:].max() == 0.0
    plain = Image.new("RGB", (10, 6), (255, 0, 0))
    exif = plain.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    plain.save(tmp_path / "r.jpg", exif=exif)
    image, mask = load_image_file(tmp_path / "r.jpg")
    assert image.shape == (1, 10, 6, 3) and mask.shape == (1, 64, 64) and mask.abs().sum() == 0
    frames = [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "f.webp", save_all=True, append_images=frames[1:], lossless=True)
    image, _ = load_image_file(tmp_path / "f.webp")
    assert image.shape[0] == 3 and image[2, 0, 0, 0] > image[1, 0, 0, 0] > image[0, 0, 0, 0]


def test_preview_any_shows_values_as_comfyui_does(tmp_path):
    preview = Registry(Folders(tmp_path, tmp_path))["PreviewAny"]()
    for value, text in (("a/b.safetensors", "a/b.safetensors"), (0.5, "0.5"), (None, "None"),
                        ({"k": [1, 2]}, json.dumps({"k": [1, 2]}, indent=4))):
        assert preview.main(value) == {"ui": {"text": (text,)}, "result": (text,)}


# ------------------------------------------------------------------------------------------- UI format
def _ui_base() -> dict:
    return json.loads((EXAMPLES / "02_modular_graph.json").read_text())


def _node(ui: dict, node_type: str) -> dict:
    return next(n for n in ui["nodes"] if n["type"] == node_type)


def _add_link(ui: dict, origin: int, slot: int, target: int, target_slot: int, kind: str) -> int:
    link_id = ui["last_link_id"] + 1
    ui["last_link_id"] = link_id
    ui["links"].append([link_id, origin, slot, target, target_slot, kind])
    return link_id


def test_ui_muted_node_is_dropped_with_its_links(inputs, tmp_path):
    ui = _ui_base()
    blend = _node(ui, "AdaINBlend")
    blend["mode"] = 2
    api = ui_to_api(ui, registry(inputs, tmp_path))
    assert str(blend["id"]) not in api
    assert "features" not in api[str(_node(ui, "AdaINDecode")["id"])]["inputs"]


def test_ui_bypassed_node_passes_its_matching_input_through(inputs, tmp_path):
    ui = _ui_base()
    blend, encode = _node(ui, "AdaINBlend"), _node(ui, "AdaINEncode")
    blend["mode"] = 4
    api = ui_to_api(ui, registry(inputs, tmp_path))
    assert api[str(_node(ui, "AdaINDecode")["id"])]["inputs"]["features"] == [str(encode["id"]), 0]


def test_ui_reroute_primitive_and_converted_widget(inputs, tmp_path):
    ui = _ui_base()
    blend, encode = _node(ui, "AdaINBlend"), _node(ui, "AdaINEncode")
    # a legacy Reroute node between Encode and Blend
    old = blend["inputs"][0]["link"]
    reroute_id = ui["last_node_id"] + 1
    into = _add_link(ui, encode["id"], 0, reroute_id, 0, "ADAIN_FEATURES")
    out = _add_link(ui, reroute_id, 0, blend["id"], 0, "ADAIN_FEATURES")
    ui["links"] = [link for link in ui["links"] if link[0] != old]
    blend["inputs"][0]["link"] = out
    ui["nodes"].append({"id": reroute_id, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*",
                        "link": into}], "outputs": [{"name": "", "type": "ADAIN_FEATURES", "links": [out]}]})
    # alpha converted to an input, fed by a PrimitiveNode
    prim_id = reroute_id + 1
    alpha_link = _add_link(ui, prim_id, 0, blend["id"], 3, "FLOAT")
    blend["inputs"].append({"name": "alpha", "type": "FLOAT", "widget": {"name": "alpha"}, "link": alpha_link})
    ui["nodes"].append({"id": prim_id, "type": "PrimitiveNode", "mode": 0, "inputs": [],
                        "outputs": [{"name": "FLOAT", "type": "FLOAT", "links": [alpha_link],
                                     "widget": {"name": "alpha"}}], "widgets_values": [0.3, "fixed"]})
    api = ui_to_api(ui, registry(inputs, tmp_path))
    inputs_of_blend = api[str(blend["id"])]["inputs"]
    assert inputs_of_blend["features"] == [str(encode["id"]), 0]
    assert inputs_of_blend["alpha"] == 0.3
    assert str(reroute_id) not in api and str(prim_id) not in api


def test_ui_upload_widget_and_notes_are_not_sent(inputs, tmp_path):
    ui = _ui_base()
    api = ui_to_api(ui, registry(inputs, tmp_path))
    load = _node(ui, "LoadImage")
    assert load["widgets_values"][1] == "image"
    assert api[str(load["id"])]["inputs"] == {"image": load["widgets_values"][0]}
    assert all(entry["class_type"] != "Note" for entry in api.values())


def test_ui_widget_values_as_dict(inputs, tmp_path):
    ui = _ui_base()
    blend = _node(ui, "AdaINBlend")
    blend["widgets_values"] = {"alpha": 0.6}
    assert ui_to_api(ui, registry(inputs, tmp_path))[str(blend["id"])]["inputs"]["alpha"] == 0.6


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def test_upscale_image_by_runs_headless_as_comfyui_defines_it(tmp_path, inputs, capsys):
    """ComfyUI's "Upscale Image By" (ImageScaleBy): round(size x factor); lanczos is Pillow's on 8 bits, area at 1/2
    the mean of each 2x2 block, nearest-exact at 2 each pixel repeated (computed here without torch)."""
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "content.png"}},
        "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "lanczos",
                                                       "scale_by": 2.0}},
        "3": {"class_type": "ImageScaleBy", "inputs": {"image": ["2", 0], "upscale_method": "area", "scale_by": 0.5}},
        "4": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                       "scale_by": 2.0}},
        "5": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "bicubic",
                                                       "scale_by": 0.33}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "lanczos"}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "area"}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "nearest"}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "bicubic"}},
    }
    code, _, out = run_cli(tmp_path, inputs, prompt)
    assert code == 0
    source = Image.open(inputs / "content.png").convert("RGB")
    lanczos = _pixels(out / "lanczos_00001_.png")
    assert lanczos.shape == (64, 80, 3)
    assert np.array_equal(lanczos, np.asarray(source.resize((80, 64), Image.Resampling.LANCZOS), dtype=np.float64))
    blocks = lanczos.reshape(32, 2, 40, 2, 3).mean(axis=(1, 3))
    floor = blocks - _pixels(out / "area_00001_.png")  # SaveImage truncates 255 x value to 8 bits, as ComfyUI
    assert floor.min() > -1e-6 and floor.max() <= 1 + 1e-6  # float32 can land just under an integer
    original = np.asarray(source, dtype=np.float64)
    assert np.array_equal(_pixels(out / "nearest_00001_.png"), original.repeat(2, axis=0).repeat(2, axis=1))
    assert _pixels(out / "bicubic_00001_.png").shape == (round(32 * 0.33), round(40 * 0.33), 3)


def test_upscale_image_by_refuses_a_factor_that_leaves_no_pixel(tmp_path, inputs, capsys):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "content.png"}},
        "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "area", "scale_by": 0.01}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    code, _, out = run_cli(tmp_path, inputs, prompt)
    printed = capsys.readouterr()
    err = printed.out + printed.err
    assert code != 0 and "scale_by 0.01 turns a 40x32 image into 0x0 pixels: use a larger factor" in err
    assert "Traceback" not in err and not list(out.glob("x_*.png"))
