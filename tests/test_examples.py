"""The example workflows: they load, type-check, convert to their API twins and run end to end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence

from adain_nodes.cli import main
from adain_nodes.host.paths import DEFAULT_DECODER
from adain_nodes.runner import Folders, Registry, load_workflow, ui_to_api, validate_prompt
from adain_nodes.runner import video_nodes
from adain_nodes.runner.latent_nodes import load_latent_file
from adain_nodes.runner.registry import VIRTUAL_NODES, input_specs
from examples.make_workflows import (  # noqa: E402
    BADGE_HEIGHT,
    DECODER_FILE,
    GROUP_TITLE,
    NOTE_FONTS,
    NOTE_TYPE,
    TITLE_HEIGHT,
    VIEW_BOX,
    WIDE,
    Graph,
    box,
    crosses,
    link_points,
    slot_position,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
UI_FILES = sorted(EXAMPLES.glob("[0-9][0-9]_*.json"))
NAMES = [p.stem for p in UI_FILES]
ALLOWED_CORE = {"LoadImage", "SaveImage", "PreviewImage", "PreviewAny", "LoadLatent", "SaveLatent", "Note",
                "MarkdownNote", "LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo"}
SMALL = 48
# Below about 8 px / 14 px the editor draws nodes without text (its level-of-detail switch); keep a margin.
LEGIBLE_SCALE = 0.65
LEGIBLE_TEXT_PX = 8  # a note's text on screen at the saved view
FILE_WIDGETS = {"encoder_name", "decoder_name", "preset"}


def _ui(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def _api(name: str) -> dict:
    return json.loads((EXAMPLES / "api" / f"{name}_api.json").read_text())


@pytest.fixture
def small_inputs(tmp_path) -> Path:
    """The example inputs at 48 px (frames: the first 3), so every example runs in a second or two."""
    folder = tmp_path / "input"
    folder.mkdir()
    for src in (EXAMPLES / "input").iterdir():
        if src.suffix == ".latent":
            shutil.copy(src, folder / src.name)
        if src.suffix == ".mp4":  # the clip: its first 3 frames at 48x36, audio and frame rate kept
            clip = video_nodes.components(video_nodes.VideoFile(src))
            frames = torch.nn.functional.interpolate(clip.images[:3].permute(0, 3, 1, 2), size=(36, 48),
                                                     mode="bilinear", antialias=True).permute(0, 2, 3, 1)
            small = video_nodes.VideoFromComponents(frames.clamp(0, 1), clip.audio, clip.frame_rate)
            video_nodes.encode_video(small, folder / src.name, "mp4", None)
        if src.suffix.lower() not in (".jpg", ".png", ".webp"):
            continue
        with Image.open(src) as img:
            frames = [f.copy() for f in ImageSequence.Iterator(img)][:3]
        scale = SMALL / max(frames[0].size)
        frames = [f.resize((max(16, round(f.width * scale)), max(16, round(f.height * scale)))) for f in frames]
        frames[0].save(folder / src.name, save_all=len(frames) > 1, append_images=frames[1:])
    return folder


def test_there_is_one_example_per_capability():
    assert NAMES == ["01_style_transfer", "02_modular_graph", "03_content_style_tradeoff", "04_style_interpolation",
                     "05_spatial_control", "06_preserve_color", "07_video_frames", "08_style_preset_save",
                     "09_style_preset_use", "10_image_statistics", "11_latent_statistics", "12_video_stylization",
                     "13_style_boost", "14_style_refine", "15_refine_modular"]
    for name in NAMES:
        assert (EXAMPLES / "api" / f"{name}_api.json").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_ui_example_is_well_formed(name, tmp_path):
    ui = _ui(name)
    registry = Registry(Folders(EXAMPLES / "input", tmp_path))
    assert ui["version"] == 0.4 and ui["groups"] and any(n["type"] == NOTE_TYPE for n in ui["nodes"])
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == len(ui["links"])
    for node in ui["nodes"]:
        assert node["type"] in ALLOWED_CORE or node["type"].startswith("AdaIN"), node["type"]
        assert node["type"] in registry or node["type"] in VIRTUAL_NODES, f"missing node type {node['type']}"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2
    for link_id, origin, slot, target, target_slot, kind in ui["links"]:
        out_types = registry.output_types(nodes[origin]["type"])
        assert out_types[slot] == kind, f"link {link_id}"
        target_input = nodes[target]["inputs"][target_slot]
        assert target_input["link"] == link_id
        spec = {s.name: s for s in input_specs(registry[nodes[target]["type"]])}[target_input["name"]]
        assert spec.type in (kind, "*"), f"link {link_id}: {kind} into {spec.name} ({spec.type})"
        assert link_id in nodes[origin]["outputs"][slot]["links"]


@pytest.mark.parametrize("name", NAMES)
def test_ui_conversion_equals_api_twin(name, tmp_path):
    registry = Registry(Folders(EXAMPLES / "input", tmp_path))
    assert ui_to_api(_ui(name), registry) == _api(name)


@pytest.mark.parametrize("name", NAMES)
def test_example_widget_values_validate(name, model_dir, tmp_path):
    if name == "09_style_preset_use":  # needs the preset that 08 writes
        (tmp_path / "styles").mkdir(exist_ok=True)
        (tmp_path / "styles" / "adain_example_mosaic.safetensors").write_bytes(b"")
    registry = Registry(Folders(EXAMPLES / "input", tmp_path))
    result = validate_prompt(load_workflow(EXAMPLES / f"{name}.json", registry).prompt, registry)
    assert result.ok, result.message()


def test_every_example_runs_end_to_end(model_dir, small_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    for name in NAMES:
        assert main(["run", str(EXAMPLES / f"{name}.json"), "--input-dir", str(small_inputs),
                     "--output-dir", str(out)]) == 0, capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    saved = [p for p in written if p.startswith("adain/")]
    assert len(saved) == 1 + 1 + 3 + 1 + 1 + 2 + 3 + 1 + 2 + 1 + 1 + 2  # 07 saves one PNG per frame (3 here)
    assert "adain/07_frame_00003_.png" in saved
    latents = {p.name: load_latent_file(p)["samples"] for p in (out / "adain").glob("11_*.latent")}
    given, reference = (load_latent_file(EXAMPLES / "input" / n)["samples"] for n in ("chelsea.latent",
                                                                                          "style_waves.latent"))
    whole, masked = latents["11_latent_whole_00001_.latent"], latents["11_latent_masked_00001_.latent"]
    assert whole.shape == masked.shape == given.shape
    assert torch.allclose(whole.mean(dim=(2, 3)), reference.mean(dim=(2, 3)), atol=1e-4)
    assert torch.equal(masked[..., -1:], given[..., -1:])  # the mask (the cat) leaves the right edge untouched
    assert not torch.equal(masked, given)
    video = video_nodes.components(video_nodes.VideoFile(out / "adain" / "12_video_00001_.mp4"))
    assert video.images.shape == (3, 36, 48, 3) and video.frame_rate == 12  # frames, and the rate passed through
    assert video.audio is not None and video.audio["sample_rate"] == 24000  # the audio passed through
    preset = tmp_path / "styles" / "adain_example_mosaic.safetensors"
    assert preset.is_file()
    shown = next(n["id"] for n in _ui("08_style_preset_save")["nodes"] if n["type"] == "PreviewAny")
    assert f"node {shown}: {preset}" in capsys.readouterr().out  # 08's Preview as Text shows where the preset went
    with Image.open(out / "adain/01_style_transfer_00001_.png") as img:
        assert img.size == Image.open(small_inputs / "chelsea.jpg").size
        assert json.loads(img.text["workflow"]) == _ui("01_style_transfer")
        assert json.loads(img.text["prompt"]) == _api("01_style_transfer")


def test_api_twins_run_too(model_dir, small_inputs, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(EXAMPLES / "api" / "02_modular_graph_api.json"), "--input-dir", str(small_inputs),
                 "--output-dir", str(out)]) == 0
    with Image.open(next(out.rglob("*.png"))) as img:
        assert "prompt" in img.text and "workflow" not in img.text


def test_example_inputs_are_small_and_documented():
    files = [p for p in (EXAMPLES / "input").iterdir() if p.is_file() and p.name != "SOURCES.md"]
    assert sum(p.stat().st_size for p in files) < 1.5e6
    sources = (EXAMPLES / "input" / "SOURCES.md").read_text()
    for p in files:
        assert f"`{p.name}`" in sources, p.name


def test_every_example_names_the_default_decoder():
    """The examples take the decoder name from the pack's one constant, never from a literal of their own."""
    generator = (EXAMPLES / "make_workflows.py").read_text()
    assert "decoder_" not in generator.replace("decoder_name", "")
    for path in sorted((EXAMPLES / "api").glob("*.json")):
        names = {node["inputs"]["decoder_name"] for node in json.loads(path.read_text()).values()
                 if node["class_type"] == "AdaINDecoderLoader"}
        assert names <= {DEFAULT_DECODER}, path.name


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _shown_box(node: dict) -> tuple[float, float, float, float]:
    """What a node covers on screen once the workflow has run (``box``: the height Load Image and Save Image
    grow to when their picture shows, measured in the editor), title bar and badge included."""
    return box(node["pos"], node["size"], node["type"])


@pytest.mark.parametrize("name", NAMES)
def test_layout_is_tidy(name):
    """No node (title bar, badge and grown preview included) covers another; groups do not overlap and hold
    their nodes whole, also once Load Image nodes have grown to show their picture."""
    ui = _ui(name)
    boxes = [_shown_box(n) for n in ui["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not _overlap(a, b), (a, b)
    groups = [g["bounding"] for g in ui["groups"]]
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            assert not _overlap(a, b), (a, b)
        for b in boxes:
            inside = a[0] <= b[0] and a[1] <= b[1] and b[0] + b[2] <= a[0] + a[2] and b[1] + b[3] <= a[1] + a[3]
            assert inside or not _overlap(a, b), (a, b)


def _node_boxes(ui: dict) -> list[tuple[float, float, float, float]]:
    """What each node covers on screen: body, title bar and the editor's node badge above it."""
    top = TITLE_HEIGHT + BADGE_HEIGHT
    return [(n["pos"][0], n["pos"][1] - top, n["size"][0], n["size"][1] + top) for n in ui["nodes"]]


@pytest.mark.parametrize("name", NAMES)
def test_group_titles_are_not_covered(name):
    """A group's title bar stays clear of its nodes' title bars and badges."""
    ui = _ui(name)
    for x, y, w, h in (g["bounding"] for g in ui["groups"]):
        title_bar = (x, y, w, GROUP_TITLE)
        assert not any(_overlap(title_bar, box) for box in _node_boxes(ui)), ui["groups"]


@pytest.mark.parametrize("name", NAMES)
def test_saved_view_shows_the_whole_graph_legibly(name):
    """At the editor's default window the saved view puts every node and group below the toolbars, on screen."""
    ui = _ui(name)
    ds = ui["extra"]["ds"]
    scale, (dx, dy) = ds["scale"], ds["offset"]
    assert LEGIBLE_SCALE <= scale <= 1.0
    for x, y, w, h in _node_boxes(ui) + [tuple(g["bounding"]) for g in ui["groups"]]:
        left, top = (x + dx) * scale, (y + dy) * scale
        right, bottom = (x + w + dx) * scale, (y + h + dy) * scale
        assert VIEW_BOX[0] <= left and right <= VIEW_BOX[2] and VIEW_BOX[1] <= top and bottom <= VIEW_BOX[3]


@pytest.mark.parametrize("name", NAMES)
def test_file_names_fit_their_widgets(name, tmp_path):
    """Nodes with a model or preset file widget are wide enough to show the whole name with its label."""
    registry = Registry(Folders(EXAMPLES / "input", tmp_path))
    for node in _ui(name)["nodes"]:
        if node["type"] not in VIRTUAL_NODES and FILE_WIDGETS & {s.name for s in input_specs(registry[node["type"]])}:
            assert node["size"][0] >= WIDE, (node["type"], node["size"])


def test_notes_say_the_decoder_ships_in_weights():
    for name in NAMES:
        for note in (n for n in _ui(name)["nodes"] if n["type"] == NOTE_TYPE):
            text = note["widgets_values"][0]
            assert DECODER_FILE not in text or "weights/" in text, text


@pytest.mark.parametrize("name", NAMES)
def test_notes_are_legible_at_the_saved_view(name):
    """Every paragraph of a note is a Markdown heading (bold, larger than the editor's 10 px body text) and
    shows at 8 px or more at the saved view; the note is tall enough for its text as the editor wraps it."""
    ui = _ui(name)
    for note in (n for n in ui["nodes"] if n["type"] == NOTE_TYPE):
        paragraphs = note["widgets_values"][0].split("\n\n")
        level = len(paragraphs[0]) - len(paragraphs[0].lstrip("#"))
        assert all(p.startswith("#" * level + " ") and "\n" not in p for p in paragraphs), paragraphs
        font = NOTE_FONTS[level]
        assert font * ui["extra"]["ds"]["scale"] >= LEGIBLE_TEXT_PX, (name, font, ui["extra"]["ds"]["scale"])
        width, height = note["size"]
        lines = sum(-(-len(p) * font * 0.5 // (width - 48)) for p in paragraphs)
        assert height >= lines * font * 1.6, (name, lines, height)


def _link_ends(ui: dict, link: list) -> tuple[dict, dict, tuple[float, float], tuple[float, float]]:
    """A link's source and target nodes and where the editor draws its ends (measured slot positions)."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    _, origin, slot, target, target_slot, _ = link
    src, dst = nodes[origin], nodes[target]
    start = slot_position(src["pos"], src["size"], slot, output=True)
    return src, dst, start, slot_position(dst["pos"], dst["size"], target_slot, output=False)


@pytest.mark.parametrize("name", NAMES)
def test_links_run_left_to_right(name):
    """Every link leaves its node's right edge towards a node that starts further right: none doubles back."""
    ui = _ui(name)
    for link in ui["links"]:
        src, dst, _, _ = _link_ends(ui, link)
        assert dst["pos"][0] >= src["pos"][0] + src["size"][0], (name, src.get("title", src["type"]),
                                                                  dst.get("title", dst["type"]))


@pytest.mark.parametrize("name", NAMES)
def test_links_pass_under_no_node_and_through_no_group_title(name):
    """No link's spline (sampled) passes under a node other than its own two, or through a group's title bar."""
    ui = _ui(name)
    titles = [(g["bounding"][0], g["bounding"][1], g["bounding"][2], GROUP_TITLE) for g in ui["groups"]]
    for link in ui["links"]:
        src, dst, start, end = _link_ends(ui, link)
        obstacles = [(n.get("title", n["type"]), _shown_box(n)) for n in ui["nodes"] if n is not src and n is not dst]
        obstacles += [("group title " + g["title"], t) for g, t in zip(ui["groups"], titles)]
        points = link_points(start, end)
        for what, rect in obstacles:
            assert not crosses(points, rect), (name, src.get("title", src["type"]), "->",
                                               dst.get("title", dst["type"]), "crosses", what)


def test_link_check_sees_a_link_under_a_node():
    """The geometry above finds a crossing where there is one, and none where the way is clear."""
    line = link_points((0, 0), (400, 0))
    assert crosses(line, (150, -20, 100, 40)) and not crosses(line, (150, 20, 100, 40))
    assert crosses(line, (150, 3, 100, 40), margin=4) and not crosses(line, (150, 3, 100, 40))
    steep = link_points((0, 0), (80, 800))  # a steep link between neighbouring columns swings back left
    assert min(p[0] for p in steep[5:-5]) < 15
    assert crosses(link_points((0, 0), (400, 300)), (150, 100, 100, 100))


@pytest.mark.parametrize("name", NAMES)
def test_notes_have_titles(name):
    """Each note says what it is about in its title bar, not the editor's default 'Markdown Note'."""
    for note in (n for n in _ui(name)["nodes"] if n["type"] == NOTE_TYPE):
        assert note.get("title", "").strip() not in ("", "Markdown Note", "Note"), note.get("title")


def test_layout_keeps_a_long_link_clear_of_the_column_it_crosses():
    """A node added in a column that a pending link must cross goes below that link's straight way, and the
    link's target comes level with its source."""
    g = Graph()
    source = g.add("LoadImage", 0, image="chelsea.jpg")
    between = g.add("LoadImage", 1, image="coffee.jpg")
    target = g.add("PreviewImage", 2)
    g.connect(source, "IMAGE", target, "images")
    ui = g.ui()
    start = slot_position(source.pos, source.size, 0, output=True)
    assert target.pos[1] == source.pos[1] and box(between.pos, between.size, between.type)[1] > start[1]
    assert not crosses(link_points(start, slot_position(target.pos, target.size, 0, output=False)),
                       box(between.pos, between.size, between.type))
    assert ui["links"] == [[1, source.id, 0, target.id, 0, "IMAGE"]]
