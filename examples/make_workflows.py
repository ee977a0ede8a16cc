"""Regenerate the example workflows: each in the editor's UI format and its API-format twin.

Both files come from one description per example, so they always agree; the tests convert each
UI file with the runner (the editor's rules) and compare it with the twin. Layout is a grid of
columns (``Graph.add`` stacks nodes in a column, leaving room for group titles and the editor's
node badges), with groups around the stages and Note nodes that explain the graph; the saved view
(``fit_view``) shows the whole graph at the editor's default window size, below its toolbars.

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
# The pack's own decoder, shipped in weights/ (made by training/); every example names this one file.
from adain_nodes.host.paths import DEFAULT_DECODER as DECODER_FILE  # noqa: E402

ENCODER_FILE = "vgg19_normalised_relu4_1.safetensors"
API_DIR = HERE / "api"

CLASSES = {**make_core_nodes(Folders(HERE / "input", HERE / "output")), **NODE_CLASS_MAPPINGS}
TITLES = {**DISPLAY_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}
NOTE_TYPE, NOTE_COLOR, NOTE_BG = "MarkdownNote", "#432", "#653"
# How the editor (frontend 1.49) draws a Markdown note's headings, in graph units: font size by heading level
# (10 px times 18/14 for ##, 16/14 for ###), line height 1.6, an average bold character about 0.5 em wide,
# 16 between paragraphs, padding around the text.
NOTE_FONTS = {2: 10 * 18 / 14, 3: 10 * 16 / 14}
NOTE_LINE, NOTE_CHAR_WIDTH, NOTE_PARAGRAPH_GAP, NOTE_PADDING = 1.6, 0.5, 16, 24
GROUP_COLORS = {"models": "#3f789e", "inputs": "#8A8", "style": "#a1309b", "transfer": "#b58b2a", "output": "#88A"}

# Layout, in graph units. Columns are NODE_WIDTH wide unless a graph widens some (WIDE fits a loader's
# widget label and full file name); nodes fill their column.
NODE_WIDTH, WIDE, COLUMN_GAP, LEFT = 320, 440, 40, 40
TITLE_HEIGHT = 30  # a node's title bar, drawn above its pos
BADGE_HEIGHT = 24  # the editor's node-source badge (the pack's name), drawn above a custom node's title bar
GROUP_TITLE, GROUP_PAD = 44, 16  # a group's title bar (font 24) and its margin around the nodes
STACK_GAP = GROUP_TITLE + 2 * GROUP_PAD  # room for a group header between two stacked nodes
NODE_GAP = 16  # between two stacked nodes of one group
FIXED_HEIGHTS = {"LoadImage": 280, "SaveImage": 300, "PreviewImage": 300, "PreviewAny": 150, "LoadVideo": 420,
                 "SaveVideo": 320}
# The editor's default window (1600 x 1000 px) less its side bar, tab bar and floating toolbars: the saved
# view fits the whole graph in this box (x0, y0, x1, y1 in screen pixels), never zoomed in beyond MAX_SCALE.
VIEW_BOX = (90, 110, 1580, 935)
MAX_SCALE = 1.0


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


def box(pos: list[float], size: list[float]) -> tuple[float, float, float, float]:
    """What a node covers on the canvas (x, y, width, height): its body, title bar and badge."""
    top = TITLE_HEIGHT + BADGE_HEIGHT
    return pos[0], pos[1] - top, size[0], size[1] + top


def fit_view(boxes: list[tuple[float, float, float, float]]) -> dict:
    """The editor's saved view (``extra.ds``) that shows every box inside VIEW_BOX, centred across, top-aligned."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    width = max(b[0] + b[2] for b in boxes) - x0
    height = max(b[1] + b[3] for b in boxes) - y0
    view_w, view_h = VIEW_BOX[2] - VIEW_BOX[0] - 2, VIEW_BOX[3] - VIEW_BOX[1] - 2  # 1 px margin for rounding
    scale = int(min(view_w / width, view_h / height, MAX_SCALE) * 1000) / 1000  # rounded down: never overflows
    left = VIEW_BOX[0] + 1 + (view_w - width * scale) / 2
    return {"scale": scale, "offset": [round(left / scale - x0, 1), round((VIEW_BOX[1] + 1) / scale - y0, 1)]}


class Graph:
    """A workflow under construction; ``ui()`` and ``api()`` give the two formats.

    Nodes are placed in columns (``col``) at a y; a node that would cover another moves down, leaving
    room for a group header between them. ``columns`` widens the first columns (e.g. ``[WIDE]``).
    """

    def __init__(self, columns: tuple[float, ...] = ()) -> None:
        self.columns = columns
        self.nodes: list[Node] = []
        self.notes: list[dict] = []
        self.links: list[list] = []
        self.groups: list[dict] = []
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def width(self, col: int) -> float:
        return self.columns[col] if col < len(self.columns) else NODE_WIDTH

    def x(self, col: int) -> float:
        return LEFT + sum(self.width(c) + COLUMN_GAP for c in range(col))

    def add(self, class_type: str, col: int, y: float, title: str | None = None, gap: float = STACK_GAP,
            **widgets: Any) -> Node:
        """A node in column ``col`` at ``y`` or below: ``gap`` clear of the nodes above (NODE_GAP in one group)."""
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
        height = FIXED_HEIGHTS.get(class_type, 24 + 22 * rows + 26 * sum(s.is_widget for s in specs))
        size = [self.width(col), height]
        pos = [self.x(col), self._free_y(self.x(col), y, size, gap)]
        node = Node(self._id(), class_type, pos, size, title, widgets, sockets, outputs)
        self.nodes.append(node)
        return node

    def _boxes(self) -> list[tuple[float, float, float, float]]:
        return [box(n.pos, n.size) for n in self.nodes] + [box(n["pos"], n["size"]) for n in self.notes]

    def _free_y(self, x: float, y: float, size: list[float], gap: float = STACK_GAP) -> float:
        """Move a new node down until it is ``gap`` clear of every node and note."""
        while True:
            new = box([x, y], size)
            clash = [b for b in self._boxes() if b[0] < new[0] + new[2] and new[0] < b[0] + b[2]
                     and b[1] - gap < new[1] + new[3] and new[1] < b[1] + b[3] + gap]
            if not clash:
                return y
            y = max(b[1] + b[3] for b in clash) + gap + TITLE_HEIGHT + BADGE_HEIGHT

    def connect(self, source: Node, output: str | int, target: Node, input_name: str) -> None:
        slot = output if isinstance(output, int) else source.slot(output)
        link_id = len(self.links) + 1
        index = [i["name"] for i in target.inputs].index(input_name)
        target.inputs[index]["link"] = link_id
        source.outputs[slot]["links"].append(link_id)
        self.links.append([link_id, source.id, slot, target.id, index, source.outputs[slot]["type"]])

    def connect_widget(self, source: Node, output: str | int, target: Node, widget: str) -> None:
        """Link an output to a widget input (the editor turns the widget into a socket and keeps its value)."""
        spec = next(s for s in input_specs(CLASSES[target.type]) if s.name == widget)
        target.inputs.append({"name": widget, "type": spec.type_name, "widget": {"name": widget}, "link": None})
        self.connect(source, output, target, widget)

    def note(self, text: str, col: int, y: float, level: int = 3) -> None:
        """A Markdown note filling column ``col`` at ``y`` or below, tall enough for its text.

        Each paragraph is a level-3 heading: the editor draws a plain Note in 10 px monospace and Markdown
        body text no larger, unreadable at the zoom that shows a whole graph; its headings are bold and 16/14
        of that size (``level`` 2: 18/14, for a graph that must open zoomed out further)."""
        paragraphs = text.split("\n\n")
        font = NOTE_FONTS[level]
        chars_per_line = (self.width(col) - 2 * NOTE_PADDING) / (NOTE_CHAR_WIDTH * font)
        lines = sum(-(-len(p) // int(chars_per_line)) for p in paragraphs)
        height = 2 * NOTE_PADDING + lines * NOTE_LINE * font + (len(paragraphs) - 1) * NOTE_PARAGRAPH_GAP
        text = "\n\n".join("#" * level + " " + p for p in paragraphs)
        size = [self.width(col), round(height)]
        pos = [self.x(col), self._free_y(self.x(col), y, size)]
        self.notes.append({"id": self._id(), "type": NOTE_TYPE, "pos": pos, "size": size,
                           "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                           "widgets_values": [text], "color": NOTE_COLOR, "bgcolor": NOTE_BG})

    def group(self, title: str, nodes: list[Node], color: str) -> None:
        """A group around ``nodes`` with its title bar above their badges."""
        boxes = [box(n.pos, n.size) for n in nodes]
        x0 = min(b[0] for b in boxes) - GROUP_PAD
        y0 = min(b[1] for b in boxes) - GROUP_TITLE
        x1 = max(b[0] + b[2] for b in boxes) + GROUP_PAD
        y1 = max(b[1] + b[3] for b in boxes) + GROUP_PAD
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
                if spec.options.get("image_upload") or spec.options.get("video_upload"):
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
                "groups": self.groups, "config": {},
                "extra": {"ds": fit_view(self._boxes() + [tuple(g["bounding"]) for g in self.groups])},
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
TOP = 60


def models(g: Graph, col: int, y: float) -> tuple[Node, Node]:
    enc = g.add("AdaINEncoderLoader", col, y, encoder_name=ENCODER_FILE)
    dec = g.add("AdaINDecoderLoader", col, y, gap=NODE_GAP, decoder_name=DECODER_FILE)
    g.group("Models", [enc, dec], GROUP_COLORS["models"])
    return enc, dec


def image(g: Graph, file: str, title: str, col: int, y: float, gap: float = STACK_GAP) -> Node:
    return g.add("LoadImage", col, y, title=title, gap=gap, image=file)


MODELS_NOTE = ("Models: put " + ENCODER_FILE + " (VGG19, Simonyan & Zisserman, CC BY 4.0) in ComfyUI/models/adain, "
               "or run 'python -m adain_nodes download'. The decoder ships in the pack's weights/ folder.")


def ex_style_transfer() -> Graph:
    g = Graph(columns=(WIDE,))
    g.note("AdaIN style transfer in one node (Huang & Belongie 2017).\n\nThe photo keeps its layout, the style "
           "image gives colours and texture; alpha trades content (0) for style (1).\n\n" + MODELS_NOTE, 0, TOP)
    enc, dec = models(g, 0, TOP)
    content = image(g, "chelsea.jpg", "Content photo", 1, TOP)
    style = image(g, "style_brushstrokes.jpg", "Style image", 1, TOP, gap=NODE_GAP)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    t = g.add("AdaINStyleTransfer", 2, TOP + 200, alpha=1.0, preserve_color="off")
    for name, node in (("encoder", enc), ("decoder", dec), ("content_image", content), ("style_image", style)):
        g.connect(node, 0, t, name)
    g.group("Style transfer", [t], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, TOP + 200, filename_prefix="adain/01_style_transfer")
    g.connect(t, "image", save, "images")
    return g


def _modular_front(g: Graph, content_file: str, style_file: str, note: str,
                   titles: tuple[str, str] = ("Content photo", "Style image")) -> tuple[Node, Node, Node, Node, Node]:
    """Note and models in column 0, the two images in column 1, their encodings in column 2."""
    g.note(note, 0, TOP)
    enc, dec = models(g, 0, TOP)
    content = image(g, content_file, titles[0], 1, TOP)
    style = image(g, style_file, titles[1], 1, TOP, gap=NODE_GAP)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 2, content.pos[1] + 100)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    s = g.add("AdaINStyleStats", 2, style.pos[1] + 100, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    return enc, dec, e, s, content


def _blend_decode(g: Graph, dec: Node, features: Node, style: Node, col: int, y: float,
                  title: str | None = None, alpha: float = 1.0, gap: float = STACK_GAP) -> tuple[Node, Node]:
    """AdaIN Blend with Decode under it (``gap`` above the Blend)."""
    b = g.add("AdaINBlend", col, y, title=title, gap=gap, alpha=alpha)
    g.connect(features, 0, b, "features")
    g.connect(style, 0, b, "style")
    d = g.add("AdaINDecode", col, y, gap=NODE_GAP)
    g.connect(dec, 0, d, "decoder")
    g.connect(b, 0, d, "features")
    return b, d


def ex_modular() -> Graph:
    g = Graph(columns=(WIDE,))
    _, dec, e, s, _ = _modular_front(g, "coffee.jpg", "style_mosaic.jpg", (
        "The same transfer in steps: Encode the content, take the style's statistics, Blend them with AdaIN, "
        "Decode.\n\nEncoded features and styles feed any number of Blend nodes: nothing is computed twice.\n\n"
        + MODELS_NOTE))
    g.group("Encode once", [e, s], GROUP_COLORS["style"])
    b, d = _blend_decode(g, dec, e, s, 3, e.pos[1])
    save = g.add("SaveImage", 3, d.pos[1], filename_prefix="adain/02_modular")
    g.connect(d, 0, save, "images")
    g.group("AdaIN and decode", [b, d], GROUP_COLORS["transfer"])
    return g


def ex_tradeoff() -> Graph:
    g = Graph(columns=(WIDE,))
    enc, dec = models(g, 0, TOP)
    content = image(g, "astronaut.jpg", "Content photo", 1, TOP)
    style = image(g, "style_waves.jpg", "Style image", 2, TOP)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 3, TOP)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    s = g.add("AdaINStyleStats", 3, TOP, gap=NODE_GAP, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    g.group("Encode once", [e, s], GROUP_COLORS["style"])
    row = max(n.pos[1] + n.size[1] for n in g.nodes) + STACK_GAP + TITLE_HEIGHT + BADGE_HEIGHT
    g.note("Content-style trade-off: alpha 0.25, 0.5, 0.75 and 1.0 from left to right. Low alpha keeps more of "
           "the photo; 1.0 is the full style.\n\nContent and style are encoded once, for all four.\n\n" + MODELS_NOTE,
           0, row, level=2)
    branches = []
    for i, alpha in enumerate((0.25, 0.5, 0.75, 1.0)):
        b, d = _blend_decode(g, dec, e, s, 1 + i, row, title=f"AdaIN Blend (alpha {alpha})", alpha=alpha)
        save = g.add("SaveImage", 1 + i, row, gap=NODE_GAP, filename_prefix=f"adain/03_alpha_{int(alpha * 100):03d}")
        g.connect(d, 0, save, "images")
        branches += [b, d, save]
    g.group("alpha 0.25 | 0.5 | 0.75 | 1.0", branches, GROUP_COLORS["transfer"])
    return g


def ex_interpolation() -> Graph:
    g = Graph(columns=(WIDE,))
    enc, dec = models(g, 0, TOP)
    styles, stats = [], []
    files = ("style_brushstrokes.jpg", "style_mosaic.jpg", "style_waves.jpg", "style_dots.jpg")
    for i, file in enumerate(files):
        styles.append(image(g, file, f"Style {i + 1}", 1 + i, TOP))
        stats.append(g.add("AdaINStyleStats", 1 + i, TOP, title=f"Style {i + 1} statistics", gap=NODE_GAP))
        g.connect(enc, 0, stats[-1], "encoder")
        g.connect(styles[-1], "IMAGE", stats[-1], "image")
    g.group("Four styles", styles + stats, GROUP_COLORS["style"])
    content = image(g, "coffee.jpg", "Content photo", 0, TOP)
    row = stats[0].pos[1] + stats[0].size[1] + STACK_GAP + TITLE_HEIGHT + BADGE_HEIGHT
    e = g.add("AdaINEncode", 1, row)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    mix = g.add("AdaINMixStyles", 2, row, weight_1=0.4, weight_2=0.3, weight_3=0.2, weight_4=0.1)
    for i in range(4):
        g.connect(stats[i], 0, mix, f"style_{i + 1}")
    b, d = _blend_decode(g, dec, e, mix, 3, row)
    g.group("Mix, blend, decode", [e, mix, b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 4, row, filename_prefix="adain/04_interpolation")
    g.connect(d, 0, save, "images")
    g.note("Style interpolation: four styles mixed by weight (0.4 / 0.3 / 0.2 / 0.1, normalised to sum 1). "
           "A weight of 0 drops a style.\n\n" + MODELS_NOTE, 0, row)
    return g


def ex_spatial() -> Graph:
    g = Graph(columns=(WIDE,))
    enc, dec = models(g, 0, TOP)
    content = image(g, "chelsea.jpg", "Content photo", 0, TOP)
    mask_a = image(g, "chelsea_mask_cat.png", "Mask: the cat", 1, TOP)
    mask_b = image(g, "chelsea_mask_background.png", "Mask: the background", 2, TOP)
    style_a = image(g, "style_brushstrokes.jpg", "Style for the cat", 1, TOP, gap=NODE_GAP)
    style_b = image(g, "style_mosaic.jpg", "Style for the background", 2, TOP, gap=NODE_GAP)
    g.group("Masks and styles", [mask_a, mask_b, style_a, style_b], GROUP_COLORS["inputs"])
    sa = g.add("AdaINStyleStats", 1, TOP, title="Cat style")
    sb = g.add("AdaINStyleStats", 2, TOP, title="Background style")
    for st, img in ((sa, style_a), (sb, style_b)):
        g.connect(enc, 0, st, "encoder")
        g.connect(img, "IMAGE", st, "image")
    g.group("Style statistics", [sa, sb], GROUP_COLORS["style"])
    e = g.add("AdaINEncode", 3, TOP)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    ba = g.add("AdaINBlend", 3, TOP, title="Blend: cat", gap=NODE_GAP, alpha=1.0)
    g.connect(e, 0, ba, "features")
    g.connect(sa, 0, ba, "style")
    g.connect(mask_a, "MASK", ba, "mask")
    bb = g.add("AdaINBlend", 3, TOP, title="Blend: background", gap=NODE_GAP, alpha=1.0)
    g.connect(ba, 0, bb, "features")
    g.connect(sb, 0, bb, "style")
    g.connect(mask_b, "MASK", bb, "mask")
    d = g.add("AdaINDecode", 3, TOP, gap=NODE_GAP)
    g.connect(dec, 0, d, "decoder")
    g.connect(bb, 0, d, "features")
    g.group("Two masked blends", [e, ba, bb, d], GROUP_COLORS["transfer"])
    g.note("Spatial control: brush strokes on the cat, mosaic on the background. Each Blend stylizes only "
           "inside its mask; two chained blends paint two styles.\n\nMask previews show the photo with the masked "
           "area cut out (a mask is a PNG's transparent part).\n\n" + MODELS_NOTE, 4, TOP)
    save = g.add("SaveImage", 4, TOP, filename_prefix="adain/05_spatial_control")
    g.connect(d, 0, save, "images")
    return g


def ex_color() -> Graph:
    g = Graph(columns=(WIDE,))
    g.note("Colour preservation. Left: the style's colours. Middle: the style recoloured to the photo's colours "
           "first (shown by Match Color). Right: only brightness is stylized.\n\n" + MODELS_NOTE, 0, TOP)
    enc, dec = models(g, 0, TOP)
    content = image(g, "astronaut.jpg", "Content photo", 1, TOP)
    style = image(g, "style_dots.jpg", "Style image", 1, TOP, gap=NODE_GAP)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    nodes = []
    for i, mode in enumerate(("off", "match style colors", "luminance only")):
        t = g.add("AdaINStyleTransfer", 2 + i, TOP, title=f"Transfer ({mode})", alpha=1.0, preserve_color=mode)
        for name, node in (("encoder", enc), ("decoder", dec), ("content_image", content), ("style_image", style)):
            g.connect(node, 0, t, name)
        save = g.add("SaveImage", 2 + i, TOP, gap=NODE_GAP, filename_prefix="adain/06_" + mode.split()[0])
        g.connect(t, 0, save, "images")
        nodes += [t, save]
    g.group("preserve_color: off | match style colors | luminance only", nodes, GROUP_COLORS["transfer"])
    m = g.add("AdaINMatchColor", 2, TOP)
    g.connect(style, "IMAGE", m, "image")
    g.connect(content, "IMAGE", m, "reference")
    p = g.add("PreviewImage", 3, m.pos[1], title="Recoloured style")
    g.connect(m, 0, p, "images")
    g.group("The recoloured style", [m, p], GROUP_COLORS["output"])
    return g


def ex_frames() -> Graph:
    g = Graph(columns=(WIDE,))
    _, dec, e, s, _ = _modular_front(g, "coffee_frames.webp", "style_waves.jpg", (
        "A batch of frames: Load Image reads every frame of the animated WebP. The style statistics are "
        "computed once for all frames, so the look stays stable; Save Image writes one PNG per frame.\n\n"
        + MODELS_NOTE),
        titles=("Frames (animated WebP)", "Style image"))
    e.title, s.title = "Encode all frames", "Style statistics (once)"
    g.group("Encode", [e, s], GROUP_COLORS["style"])
    b, d = _blend_decode(g, dec, e, s, 3, e.pos[1], alpha=0.9)
    g.group("Every frame", [b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, d.pos[1], filename_prefix="adain/07_frame")
    g.connect(d, 0, save, "images")
    return g


def ex_video() -> Graph:
    g = Graph(columns=(WIDE, WIDE))
    g.note("Video that holds still: Load Video -> Get Video Components -> AdaIN Video Style Transfer -> Create "
           "Video -> Save Video; the audio and frame rate pass through. The clip pans 3 px per frame, which per-frame "
           "stylization turns into shimmer: the video node keeps the picture on the networks' grid as the camera "
           "moves and pools AdaIN's statistics over recent frames.\n\n" + MODELS_NOTE, 0, TOP)
    enc, dec = models(g, 0, TOP)
    load = g.add("LoadVideo", 1, TOP, title="Clip", file="chelsea_pan.mp4")
    parts = g.add("GetVideoComponents", 1, TOP, gap=NODE_GAP)
    g.connect(load, 0, parts, "video")
    style = image(g, "style_brushstrokes.jpg", "Style image", 1, TOP, gap=NODE_GAP)
    g.group("Clip and style", [load, parts, style], GROUP_COLORS["inputs"])
    v = g.add("AdaINVideoStyleTransfer", 2, TOP)
    g.connect(enc, 0, v, "encoder")
    g.connect(dec, 0, v, "decoder")
    g.connect(parts, "images", v, "frames")
    g.connect(style, "IMAGE", v, "style_image")
    g.group("Stylize every frame, stably", [v], GROUP_COLORS["transfer"])
    create = g.add("CreateVideo", 3, TOP)
    g.connect(v, 0, create, "images")
    g.connect(parts, "audio", create, "audio")
    g.connect_widget(parts, "fps", create, "fps")
    save = g.add("SaveVideo", 3, TOP, gap=NODE_GAP, filename_prefix="adain/12_video")
    g.connect(create, 0, save, "video")
    g.group("Video out", [create, save], GROUP_COLORS["output"])
    return g


PRESET = "adain_example_mosaic"


def ex_save_preset() -> Graph:
    g = Graph(columns=(WIDE,))
    g.note("Save a style preset: the style's statistics (a few kB) go to ComfyUI/models/adain_styles/" + PRESET
           + ".safetensors (headless: --styles-dir); 'Preview as Text' shows the file written.\n\n"
           "'09_style_preset_use' then stylizes with it, without the style image.", 0, TOP)
    enc = g.add("AdaINEncoderLoader", 0, TOP, encoder_name=ENCODER_FILE)
    g.group("Encoder", [enc], GROUP_COLORS["models"])
    style = image(g, "style_mosaic.jpg", "Style image", 1, TOP)
    g.group("Style", [style], GROUP_COLORS["inputs"])
    s = g.add("AdaINStyleStats", 2, TOP, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    save = g.add("AdaINSaveStyle", 2, TOP, gap=NODE_GAP, name=PRESET, overwrite=True)
    g.connect(s, 0, save, "style")
    g.group("Statistics to preset", [s, save], GROUP_COLORS["style"])
    shown = g.add("PreviewAny", 3, save.pos[1], title="Preset written to")
    g.connect(save, "saved_to", shown, "source")
    return g


def ex_use_preset() -> Graph:
    g = Graph(columns=(WIDE, WIDE))
    g.note("Use a saved style preset: no style image, no style encoding. Run '08_style_preset_save' first; a "
           "preset works only with the encoder that made it.\n\n" + MODELS_NOTE, 0, TOP)
    enc, dec = models(g, 0, TOP)
    content = image(g, "chelsea.jpg", "Content photo", 1, TOP)
    preset = g.add("AdaINLoadStyle", 1, TOP, gap=NODE_GAP, preset=PRESET + ".safetensors")
    g.group("Content and preset", [content, preset], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 2, TOP + 100)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    b, d = _blend_decode(g, dec, e, preset, 2, TOP + 100, gap=NODE_GAP)
    g.group("Encode, blend, decode", [e, b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, TOP + 100, filename_prefix="adain/09_style_preset")
    g.connect(d, 0, save, "images")
    return g


def _whole_and_masked(g: Graph, class_type: str, source: Node, reference: Node, mask: Node, save_type: str,
                      prefix: str, what: str, first_col: int = 1) -> None:
    """Two statistics-matching nodes side by side: the whole input at strength 1, the masked part at 0.8."""
    nodes = []
    input_name, save_input = ("image", "images") if save_type == "SaveImage" else ("latent", "samples")
    for i, (strength, masked) in enumerate(((1.0, False), (0.8, True))):
        a = g.add(class_type, first_col + i, TOP, title=f"{TITLES[class_type]} (masked)" if masked else None,
                  strength=strength)
        g.connect(source, 0, a, input_name)
        g.connect(reference, 0, a, "reference")
        if masked:
            g.connect(mask, "MASK", a, "mask")
        save = g.add(save_type, first_col + i, TOP, gap=NODE_GAP, filename_prefix=f"{prefix}_{'masked' if masked else 'whole'}")
        g.connect(a, 0, save, save_input)
        nodes += [a, save]
    g.group(f"Whole {what} | inside the mask", nodes, GROUP_COLORS["transfer"])


def ex_image_statistics() -> Graph:
    g = Graph(columns=(WIDE, WIDE))
    g.note("AdaIN on pixels, no model: each RGB channel takes the mean and std of the reference's (the "
           "coffee's warm tones). Keeps colours consistent across img2img passes.\n\nLeft: the whole picture. "
           "Right: only the cat (the mask), at strength 0.8.", 0, TOP)
    photo = image(g, "chelsea.jpg", "Photo", 0, TOP)
    reference = image(g, "coffee.jpg", "Reference colours", 1, TOP)
    mask = image(g, "chelsea_mask_cat.png", "Mask: the cat", 1, TOP, gap=NODE_GAP)
    g.group("Images", [photo, reference, mask], GROUP_COLORS["inputs"])
    _whole_and_masked(g, "AdaINImage", photo, reference, mask, "SaveImage", "adain/10_image", "picture", first_col=2)
    return g


def ex_latent_statistics() -> Graph:
    g = Graph(columns=(WIDE,))
    g.note("AdaIN in latent space, no model: each latent channel takes the reference latent's mean and std (any "
           "channel count: SD1.x, SDXL, SD3, Flux).\n\nThe .latent inputs are stand-ins; in practice connect VAE "
           "Encode or a sampler, then decode. The mask is resized to the latent.", 0, TOP)
    latent = g.add("LoadLatent", 0, TOP, title="Latent to adjust", latent="chelsea.latent")
    reference = g.add("LoadLatent", 0, TOP, title="Reference latent", gap=NODE_GAP, latent="style_waves.latent")
    mask = image(g, "chelsea_mask_cat.png", "Mask: the cat", 0, TOP, gap=NODE_GAP)
    g.group("Latents and mask", [latent, reference, mask], GROUP_COLORS["inputs"])
    _whole_and_masked(g, "AdaINLatent", latent, reference, mask, "SaveLatent", "adain/11_latent", "latent")
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
    "10_image_statistics": ex_image_statistics,
    "11_latent_statistics": ex_latent_statistics,
    "12_video_stylization": ex_video,
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
