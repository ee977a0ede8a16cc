"""Regenerate the example workflows: each in the editor's UI format and its API-format twin.

Both files come from one description per example, so they always agree; the tests convert each
UI file with the runner (the editor's rules) and compare it with the twin. Layout is a grid of
columns, with groups around the stages and Note nodes that explain the graph.

    python examples/make_workflows.py
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from adain_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
from adain_nodes.runner.core_nodes import DISPLAY_NAMES, Folders, make_core_nodes  # noqa: E402
from adain_nodes.runner.registry import input_specs  # noqa: E402

ENCODER_FILE = "vgg19_normalised_relu4_1.safetensors"
# The pack's own decoder, shipped in weights/ (made by training/); every example names this one file.
DECODER_FILE = "adain_decoder_relu4_1.safetensors"
API_DIR = HERE / "api"

CLASSES = {**make_core_nodes(Folders(HERE / "input", HERE / "output")), **NODE_CLASS_MAPPINGS}
TITLES = {**DISPLAY_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}
COLUMN = 360
NOTE_COLOR, NOTE_BG = "#432", "#653"
GROUP_COLORS = {"models": "#3f789e", "inputs": "#8A8", "style": "#a1309b", "transfer": "#b58b2a", "output": "#88A"}


@dataclass
class Node:
    id: int
    type: str
    pos: list[float]
    size: list[float]
    title: str | None
    widgets: dict[str, Any]
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    order: int = 0

    def slot(self, name: str) -> int:
        return [o["name"] for o in self.outputs].index(name)


class Graph:
    """A workflow under construction; ``ui()`` and ``api()`` give the two formats."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.notes: list[dict] = []
        self.links: list[list] = []
        self.groups: list[dict] = []
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add(self, class_type: str, col: float, y: float, title: str | None = None, **widgets: Any) -> Node:
        cls = CLASSES[class_type]
        specs = input_specs(cls)
        sockets = [{"name": s.name, "type": s.type_name, "link": None} for s in specs if not s.is_widget]
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        outputs = [{"name": n, "type": t, "links": [], "slot_index": i}
                   for i, (n, t) in enumerate(zip(names, cls.RETURN_TYPES))]
        for s in specs:
            if s.is_widget and s.name not in widgets:
                widgets[s.name] = s.options.get("default", s.choices[0] if s.choices else None)
        rows = max(len(sockets), len(outputs))
        height = {"LoadImage": 330, "SaveImage": 300, "PreviewImage": 260}.get(
            class_type, 40 + 22 * rows + 26 * sum(s.is_widget for s in specs))
        x = 40 + col * COLUMN
        y = self._free_y(x, y, height)
        node = Node(self._id(), class_type, [x, y], [320, height], title, widgets, sockets, outputs)
        self.nodes.append(node)
        return node

    def _free_y(self, x: float, y: float, height: float, gap: float = 75) -> float:
        """Move a new node down until it clears every node and note (with room for group headers)."""
        boxes = [(n.pos[0], n.pos[1], n.size[0], n.size[1]) for n in self.nodes]
        boxes += [(n["pos"][0], n["pos"][1], n["size"][0], n["size"][1]) for n in self.notes]
        while True:
            clash = [b for b in boxes if b[0] < x + 320 and x < b[0] + b[2]
                     and b[1] - 30 - gap < y + height and y - 30 < b[1] + b[3] + gap]
            if not clash:
                return y
            y = max(b[1] + b[3] for b in clash) + 30 + gap

    def connect(self, source: Node, output: str | int, target: Node, input_name: str) -> None:
        slot = output if isinstance(output, int) else source.slot(output)
        link_id = len(self.links) + 1
        index = [i["name"] for i in target.inputs].index(input_name)
        target.inputs[index]["link"] = link_id
        source.outputs[slot]["links"].append(link_id)
        self.links.append([link_id, source.id, slot, target.id, index, source.outputs[slot]["type"]])

    def note(self, text: str, col: float, y: float, width: float = 320, height: float = 160) -> None:
        self.notes.append({"id": self._id(), "type": "Note", "pos": [40 + col * COLUMN, y], "size": [width, height],
                           "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                           "widgets_values": [text], "color": NOTE_COLOR, "bgcolor": NOTE_BG})

    def group(self, title: str, nodes: list[Node], color: str) -> None:
        x0 = min(n.pos[0] for n in nodes) - 15
        y0 = min(n.pos[1] for n in nodes) - 50
        x1 = max(n.pos[0] + n.size[0] for n in nodes) + 15
        y1 = max(n.pos[1] + n.size[1] for n in nodes) + 15
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                            "color": color, "font_size": 24, "flags": {}})

    def _sorted(self) -> list[Node]:
        """Dependency order (the editor's 'order' field)."""
        done: list[Node] = []
        by_id = {n.id: n for n in self.nodes}
        parents = {n.id: [link[1] for link in self.links if link[3] == n.id] for n in self.nodes}

        def visit(node: Node) -> None:
            if node in done:
                return
            for p in parents[node.id]:
                visit(by_id[p])
            done.append(node)

        for n in self.nodes:
            visit(n)
        return done

    def _widget_values(self, node: Node) -> list:
        values = []
        for spec in input_specs(CLASSES[node.type]):
            if spec.is_widget:
                values.append(node.widgets[spec.name])
                if spec.options.get("image_upload"):
                    values.append("image")  # the editor stores the upload button's value too
        return values

    def ui(self) -> dict:
        nodes = []
        for order, node in enumerate(self._sorted()):
            entry: dict[str, Any] = {"id": node.id, "type": node.type, "pos": node.pos, "size": node.size,
                                     "flags": {}, "order": order + len(self.notes), "mode": 0,
                                     "inputs": node.inputs,
                                     "outputs": [{**o, "links": o["links"] or None} for o in node.outputs],
                                     "properties": {"Node name for S&R": node.type},
                                     "widgets_values": self._widget_values(node)}
            if node.title:
                entry["title"] = node.title
            nodes.append(entry)
        for i, note in enumerate(self.notes):
            note["order"] = i
        return {"id": "00000000-0000-4000-8000-000000000000", "revision": 0, "last_node_id": self.next_id - 1,
                "last_link_id": len(self.links), "nodes": self.notes + nodes, "links": self.links,
                "groups": self.groups, "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}},
                "version": 0.4}

    def api(self) -> dict:
        prompt = {}
        for node in self._sorted():
            inputs: dict[str, Any] = {name: value for name, value in node.widgets.items()}
            for slot in node.inputs:
                if slot["link"] is not None:
                    link = self.links[slot["link"] - 1]
                    inputs[slot["name"]] = [str(link[1]), link[2]]
            prompt[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                                    "_meta": {"title": node.title or TITLES[node.type]}}
        return prompt


# ---------------------------------------------------------------------------------------- examples
def models(g: Graph, y: float = 60) -> tuple[Node, Node]:
    enc = g.add("AdaINEncoderLoader", 0, y, encoder_name=ENCODER_FILE)
    dec = g.add("AdaINDecoderLoader", 0, y + 130, decoder_name=DECODER_FILE)
    g.group("Models (models/adain)", [enc, dec], GROUP_COLORS["models"])
    return enc, dec


def image(g: Graph, file: str, title: str, col: float, y: float) -> Node:
    return g.add("LoadImage", col, y, title=title, image=file)


MODELS_NOTE = ("Models go in ComfyUI/models/adain:\n- " + ENCODER_FILE + " (VGG19 encoder, relu4_1; VGG weights by "
               "Simonyan & Zisserman, CC BY 4.0)\n- " + DECODER_FILE + " (decoder trained for that encoder)\n"
               "Headless: python -m adain_nodes run <this file> --models-dir DIR")


def ex_style_transfer() -> Graph:
    g = Graph()
    g.note("AdaIN style transfer in one node (Huang & Belongie 2017).\n\nThe content photo keeps its layout; the "
           "style image gives colours and texture. alpha trades content (0) for style (1).\n\n" + MODELS_NOTE,
           1, 60, 340, 250)
    enc, dec = models(g, 360)
    content = image(g, "chelsea.jpg", "Content photo", 0, 660)
    style = image(g, "style_brushstrokes.jpg", "Style image", 0, 1040)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    t = g.add("AdaINStyleTransfer", 1, 660, alpha=1.0, preserve_color="off")
    for name, node in (("encoder", enc), ("decoder", dec), ("content_image", content), ("style_image", style)):
        g.connect(node, 0, t, name)
    save = g.add("SaveImage", 2, 660, filename_prefix="adain/01_style_transfer")
    g.connect(t, "image", save, "images")
    g.group("Style transfer", [t], GROUP_COLORS["transfer"])
    return g


def _modular_front(g: Graph, content_file: str, style_file: str, note: str) -> tuple[Node, Node, Node, Node]:
    g.note(note, 0, 60, 680, 200)
    enc, dec = models(g, 330)
    content = image(g, content_file, "Content photo", 0, 640)
    style = image(g, style_file, "Style image", 0, 1020)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 1, 640)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    s = g.add("AdaINStyleStats", 1, 1020, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    g.group("Encode once", [e, s], GROUP_COLORS["style"])
    return dec, e, s, content


def ex_modular() -> Graph:
    g = Graph()
    dec, e, s, _ = _modular_front(g, "coffee.jpg", "style_mosaic.jpg", (
        "The same transfer as separate steps: Encode the content, compute the style's statistics (channel mean "
        "and std of its VGG features), Blend them with AdaIN, Decode to an image.\n\nEncoded features and "
        "styles can be reused by any number of Blend nodes: nothing is computed twice.\n\n" + MODELS_NOTE))
    b = g.add("AdaINBlend", 2, 640, alpha=1.0)
    g.connect(e, 0, b, "features")
    g.connect(s, 0, b, "style")
    d = g.add("AdaINDecode", 2, 820)
    g.connect(dec, 0, d, "decoder")
    g.connect(b, 0, d, "features")
    g.group("AdaIN and decode", [b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, 640, filename_prefix="adain/02_modular")
    g.connect(d, 0, save, "images")
    return g


def ex_tradeoff() -> Graph:
    g = Graph()
    dec, e, s, _ = _modular_front(g, "astronaut.jpg", "style_waves.jpg", (
        "Content-style trade-off: the same content and style blended at alpha 0.25, 0.5, 0.75 and 1.0 "
        "(left to right). Low alpha keeps more of the photo, 1.0 is the full style. Content and style are "
        "encoded once and shared by the four Blend nodes.\n\n" + MODELS_NOTE))
    blends = []
    for i, alpha in enumerate((0.25, 0.5, 0.75, 1.0)):
        b = g.add("AdaINBlend", 2 + i, 640, title=f"AdaIN Blend (alpha {alpha})", alpha=alpha)
        g.connect(e, 0, b, "features")
        g.connect(s, 0, b, "style")
        d = g.add("AdaINDecode", 2 + i, 820)
        g.connect(dec, 0, d, "decoder")
        g.connect(b, 0, d, "features")
        save = g.add("SaveImage", 2 + i, 960, filename_prefix=f"adain/03_alpha_{int(alpha * 100):03d}")
        g.connect(d, 0, save, "images")
        blends += [b, d, save]
    g.group("alpha 0.25 | 0.5 | 0.75 | 1.0", blends, GROUP_COLORS["transfer"])
    return g


def ex_interpolation() -> Graph:
    g = Graph()
    g.note("Style interpolation: four styles mixed with weights (normalised to sum 1, here 0.4 / 0.3 / 0.2 / 0.1). "
           "Change the weights to move between the styles; a weight of 0 drops a style.\n\n" + MODELS_NOTE,
           0, 60, 680, 180)
    enc, dec = models(g, 310)
    styles = []
    files = ("style_brushstrokes.jpg", "style_mosaic.jpg", "style_waves.jpg", "style_dots.jpg")
    for i, file in enumerate(files):
        img = image(g, file, f"Style {i + 1}", 1 + i, 310)
        st = g.add("AdaINStyleStats", 1 + i, 690, title=f"Style {i + 1} statistics")
        g.connect(enc, 0, st, "encoder")
        g.connect(img, "IMAGE", st, "image")
        styles += [img, st]
    g.group("Four styles", styles, GROUP_COLORS["style"])
    mix = g.add("AdaINMixStyles", 2, 900, weight_1=0.4, weight_2=0.3, weight_3=0.2, weight_4=0.1)
    for i in range(4):
        g.connect(styles[2 * i + 1], 0, mix, f"style_{i + 1}")
    content = image(g, "coffee.jpg", "Content photo", 0, 620)
    e = g.add("AdaINEncode", 1, 900)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    b = g.add("AdaINBlend", 3, 900, alpha=1.0)
    g.connect(e, 0, b, "features")
    g.connect(mix, 0, b, "style")
    d = g.add("AdaINDecode", 3, 1080)
    g.connect(dec, 0, d, "decoder")
    g.connect(b, 0, d, "features")
    g.group("Mix, blend, decode", [mix, e, b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 4, 900, filename_prefix="adain/04_interpolation")
    g.connect(d, 0, save, "images")
    return g


def ex_spatial() -> Graph:
    g = Graph()
    g.note("Spatial control: brush strokes on the cat, mosaic on the background. Each AdaIN Blend takes the "
           "content statistics inside its mask and stylizes only there; chaining two blends with complementary "
           "masks paints two styles in one picture.\n\nMasks are PNGs whose transparent part is the masked area "
           "(Load Image's MASK output is 1 - alpha, as the mask editor saves them).\n\n" + MODELS_NOTE,
           0, 60, 320, 330)
    enc, dec = models(g, 460)
    content = image(g, "chelsea.jpg", "Content photo", 0, 780)
    mask_a = image(g, "chelsea_mask_cat.png", "Mask: the cat", 1, 60)
    mask_b = image(g, "chelsea_mask_background.png", "Mask: the background", 2, 60)
    style_a = image(g, "style_brushstrokes.jpg", "Style for the cat", 1, 440)
    style_b = image(g, "style_mosaic.jpg", "Style for the background", 2, 440)
    g.group("Masks and styles", [mask_a, mask_b, style_a, style_b], GROUP_COLORS["inputs"])
    sa = g.add("AdaINStyleStats", 1, 820, title="Cat style")
    sb = g.add("AdaINStyleStats", 2, 820, title="Background style")
    for st, img in ((sa, style_a), (sb, style_b)):
        g.connect(enc, 0, st, "encoder")
        g.connect(img, "IMAGE", st, "image")
    e = g.add("AdaINEncode", 1, 1000)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    ba = g.add("AdaINBlend", 2, 1000, title="Blend: cat", alpha=1.0)
    g.connect(e, 0, ba, "features")
    g.connect(sa, 0, ba, "style")
    g.connect(mask_a, "MASK", ba, "mask")
    bb = g.add("AdaINBlend", 3, 1000, title="Blend: background", alpha=1.0)
    g.connect(ba, 0, bb, "features")
    g.connect(sb, 0, bb, "style")
    g.connect(mask_b, "MASK", bb, "mask")
    d = g.add("AdaINDecode", 3, 1180)
    g.connect(dec, 0, d, "decoder")
    g.connect(bb, 0, d, "features")
    g.group("Two masked blends", [sa, sb, e, ba, bb, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 4, 1000, filename_prefix="adain/05_spatial_control")
    g.connect(d, 0, save, "images")
    return g


def ex_color() -> Graph:
    g = Graph()
    g.note("Colour preservation. Left: the style's colours (off). Middle: 'match style colors' recolours the style "
           "image to the photo's colour statistics before the transfer. Right: 'luminance only' stylizes the "
           "brightness and keeps the photo's colours.\nAdaIN Match Color shows the recoloured style on its "
           "own.\n\n" + MODELS_NOTE, 0, 60, 680, 220)
    enc, dec = models(g, 350)
    content = image(g, "astronaut.jpg", "Content photo", 0, 650)
    style = image(g, "style_dots.jpg", "Style image", 0, 1030)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    nodes = []
    for i, mode in enumerate(("off", "match style colors", "luminance only")):
        t = g.add("AdaINStyleTransfer", 1 + i, 650, title=f"Transfer ({mode})", alpha=1.0, preserve_color=mode)
        for name, node in (("encoder", enc), ("decoder", dec), ("content_image", content), ("style_image", style)):
            g.connect(node, 0, t, name)
        save = g.add("SaveImage", 1 + i, 880, filename_prefix="adain/06_color_" + mode.replace(" ", "_"))
        g.connect(t, 0, save, "images")
        nodes += [t, save]
    g.group("preserve_color: off | match style colors | luminance only", nodes, GROUP_COLORS["transfer"])
    m = g.add("AdaINMatchColor", 1, 1260)
    g.connect(style, "IMAGE", m, "image")
    g.connect(content, "IMAGE", m, "reference")
    p = g.add("PreviewImage", 2, 1260, title="Recoloured style")
    g.connect(m, 0, p, "images")
    return g


def ex_frames() -> Graph:
    g = Graph()
    g.note("A batch of frames (video-like): Load Image reads every frame of the animated WebP as one batch. The "
           "style statistics are computed once and applied to all frames, so the look stays stable from frame to "
           "frame. Save Image writes one numbered PNG per frame.\n\n" + MODELS_NOTE, 0, 60, 680, 200)
    dec, e, s, _ = _modular_front_frames(g)
    b = g.add("AdaINBlend", 2, 640, alpha=0.9)
    g.connect(e, 0, b, "features")
    g.connect(s, 0, b, "style")
    d = g.add("AdaINDecode", 2, 820)
    g.connect(dec, 0, d, "decoder")
    g.connect(b, 0, d, "features")
    g.group("Every frame", [b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, 640, filename_prefix="adain/07_frame")
    g.connect(d, 0, save, "images")
    return g


def _modular_front_frames(g: Graph) -> tuple[Node, Node, Node, Node]:
    enc, dec = models(g, 330)
    frames = image(g, "coffee_frames.webp", "Frames (animated WebP)", 0, 640)
    style = image(g, "style_waves.jpg", "Style image", 0, 1020)
    g.group("Images", [frames, style], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 1, 640, title="Encode all frames")
    g.connect(enc, 0, e, "encoder")
    g.connect(frames, "IMAGE", e, "image")
    s = g.add("AdaINStyleStats", 1, 1020, title="Style statistics (once)")
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    g.group("Encode", [e, s], GROUP_COLORS["style"])
    return dec, e, s, frames


PRESET = "adain_example_mosaic"


def ex_save_preset() -> Graph:
    g = Graph()
    g.note("Save a style preset: the style's statistics (a few kB) are stored as " + PRESET + ".safetensors in "
           "models/adain_styles. Run this once; then '09_style_preset_use' stylizes with the preset, without the "
           "style image.", 0, 60, 680, 150)
    enc = g.add("AdaINEncoderLoader", 0, 280, encoder_name=ENCODER_FILE)
    g.group("Encoder", [enc], GROUP_COLORS["models"])
    style = image(g, "style_mosaic.jpg", "Style image", 0, 450)
    s = g.add("AdaINStyleStats", 1, 280, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    save = g.add("AdaINSaveStyle", 1, 450, name=PRESET, overwrite=True)
    g.connect(s, 0, save, "style")
    g.group("Statistics to preset", [s, save], GROUP_COLORS["style"])
    return g


def ex_use_preset() -> Graph:
    g = Graph()
    g.note("Use a saved style preset: no style image, no style encoding. Run '08_style_preset_save' first (it "
           "writes " + PRESET + ".safetensors); a preset only works with the encoder that made it.\n\n"
           + MODELS_NOTE, 0, 60, 680, 190)
    enc, dec = models(g, 320)
    content = image(g, "chelsea.jpg", "Content photo", 0, 620)
    preset = g.add("AdaINLoadStyle", 1, 320, preset=PRESET + ".safetensors")
    e = g.add("AdaINEncode", 1, 620)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    b = g.add("AdaINBlend", 2, 620, alpha=1.0)
    g.connect(e, 0, b, "features")
    g.connect(preset, 0, b, "style")
    d = g.add("AdaINDecode", 2, 800)
    g.connect(dec, 0, d, "decoder")
    g.connect(b, 0, d, "features")
    g.group("Preset, blend, decode", [preset, e, b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, 620, filename_prefix="adain/09_style_preset")
    g.connect(d, 0, save, "images")
    return g


EXAMPLES = {
    "01_style_transfer": ex_style_transfer,
    "02_modular_graph": ex_modular,
    "03_content_style_tradeoff": ex_tradeoff,
    "04_style_interpolation": ex_interpolation,
    "05_spatial_control": ex_spatial,
    "06_preserve_color": ex_color,
    "07_video_frames": ex_frames,
    "08_style_preset_save": ex_save_preset,
    "09_style_preset_use": ex_use_preset,
}


def _dump(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    API_DIR.mkdir(exist_ok=True)
    for name, build in EXAMPLES.items():
        graph = build()
        _dump(graph.ui(), HERE / f"{name}.json")
        _dump(graph.api(), API_DIR / f"{name}_api.json")
    print(f"wrote {len(EXAMPLES)} workflows to {HERE} and their API twins to {API_DIR}")


if __name__ == "__main__":
    main()
