"""Regenerate the example workflows: each in the editor's UI format and its API-format twin.

Both files come from one description per example, so they always agree; the tests convert each
UI file with the runner (the editor's rules) and compare it with the twin. Layout is a grid of
columns, one per stage, so that links run left to right; ``Graph.layout`` places each node in its
column where nothing covers it and none of its links (the editor's spline) passes under a node or
through a group's title bar, with nodes at the height they take once their picture shows. Groups
hold the stages and titled Note nodes explain the graph; the saved view (``fit_view``) shows the
whole graph at the editor's default window size, below its toolbars.

    python examples/make_workflows.py
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# The pack's own decoder, shipped in weights/ (made by training/); every example names this one file.
from adain_nodes.host.paths import DEFAULT_DECODER as DECODER_FILE, DEFAULT_ENCODER as ENCODER_FILE  # noqa: E402
from adain_nodes.runner.core_nodes import Folders  # noqa: E402
from adain_nodes.runner.registry import Registry, input_specs  # noqa: E402

API_DIR = HERE / "api"

REGISTRY = Registry(Folders(HERE / "input", HERE / "output"))
CLASSES, TITLES = REGISTRY.classes, REGISTRY.display_names
NOTE_TYPE, NOTE_COLOR, NOTE_BG = "MarkdownNote", "#432", "#653"
# How the editor (frontend 1.49) draws a Markdown note's headings, in graph units: font size by heading level
# (10 px times 18/14 for ##, 16/14 for ###), line height 1.6, an average bold character about 0.5 em wide,
# 16 between paragraphs, padding around the text.
NOTE_FONTS = {2: 10 * 18 / 14, 3: 10 * 16 / 14}
NOTE_LINE, NOTE_CHAR_WIDTH, NOTE_PARAGRAPH_GAP, NOTE_PADDING = 1.6, 0.5, 16, 24
GROUP_COLORS = {"models": "#3f789e", "inputs": "#8A8", "style": "#a1309b", "transfer": "#b58b2a", "output": "#88A"}

# Layout, in graph units. Columns are NODE_WIDTH wide unless a graph widens some (WIDE fits a loader's
# widget label and full file name).
NODE_WIDTH, WIDE, COLUMN_GAP, LEFT, TOP = 260, 440, 60, 40, 60
TITLE_HEIGHT = 30  # a node's title bar, drawn above its pos
BADGE_HEIGHT = 24  # the editor's node-source badge (the pack's name), drawn above a custom node's title bar
# a group's title bar (font 24), its margin around the nodes, the gap between groups
GROUP_TITLE, GROUP_PAD, GROUP_GAP = 44, 16, 8
NODE_GAP = 16  # between two stacked nodes
# Measured in the real editor (ComfyUI 0.33, frontend 1.49) after a run, from app.rootGraph: the height a node
# takes once its picture shows (Load Image grows from any smaller saved height to 314 at widths 240 to 440;
# Save and Preview Image to 270 at 260 wide), and where it draws a node's slots (input i's centre at
# (x + 10, y + 14 + 20 i), output i's at (x + width - 9, y + 14 + 20 i)).
SHOWN_HEIGHTS = {"LoadImage": 314, "SaveImage": 270, "PreviewImage": 270}
# Load Video and Save Video show the clip: drawn tall enough for it (seen in the editor after a run).
FIXED_HEIGHTS = {**SHOWN_HEIGHTS, "PreviewAny": 200, "LoadVideo": 420, "SaveVideo": 320}
SLOT_TOP, SLOT_PITCH, SLOT_INSET = 14, 20, (10, 9)
# The editor's link spline (frontend 1.49): a cubic Bezier whose control points lie max(30, distance / 4) to the
# right of the output and to the left of the input. Links keep LINK_CLEARANCE from nodes and group title bars.
LINK_REACH, LINK_CURL = 30, 0.25
LINK_CLEARANCE = 5
ALIGN_SLACK = 200  # how much lower a node may go to make one of its links straight
MAX_DROP = 3000  # how far below its column's last node the layout looks for a place
# The editor's default window (1600 x 1000 px) less its side bar, tab bar and floating toolbars: the saved
# view fits the whole graph in this box (x0, y0, x1, y1 in screen pixels), never zoomed in beyond MAX_SCALE.
VIEW_BOX = (90, 110, 1580, 935)
MAX_SCALE = 1.0

Rect = tuple[float, float, float, float]  # x, y, width, height


@dataclass(eq=False)
class Node:
    id: int
    type: str
    col: int
    size: list[float]
    title: str | None
    widgets: dict[str, Any]
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    below: tuple[Node, ...] = ()
    pos: list[float] = field(default_factory=list)

    def slot(self, name: str) -> int:
        return [o["name"] for o in self.outputs].index(name)

    @property
    def is_note(self) -> bool:
        return self.type == NOTE_TYPE


def box(pos: list[float], size: list[float], node_type: str = "") -> Rect:
    """What a node covers on the canvas once the workflow has run: its body (at the height its picture makes
    it, ``SHOWN_HEIGHTS``), title bar and badge."""
    top = TITLE_HEIGHT + BADGE_HEIGHT
    return pos[0], pos[1] - top, size[0], max(size[1], SHOWN_HEIGHTS.get(node_type, 0)) + top


def link_points(start: tuple[float, float], end: tuple[float, float], samples: int = 24) -> list[tuple[float, float]]:
    """Points along the editor's link spline from an output at ``start`` to an input at ``end``."""
    reach = max(LINK_REACH, LINK_CURL * ((end[0] - start[0]) ** 2 + (end[1] - start[1]) ** 2) ** 0.5)
    p = [start, (start[0] + reach, start[1]), (end[0] - reach, end[1]), end]
    points = []
    for i in range(samples + 1):
        t = i / samples
        w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
        points.append((sum(wi * q[0] for wi, q in zip(w, p)), sum(wi * q[1] for wi, q in zip(w, p))))
    return points


def crosses(points: list[tuple[float, float]], rect: Rect, margin: float = 0) -> bool:
    """Whether the polyline through ``points`` meets ``rect`` grown by ``margin`` (Liang-Barsky clipping)."""
    x, y, w, h = rect[0] - margin, rect[1] - margin, rect[2] + 2 * margin, rect[3] + 2 * margin
    for p, q in pairwise(points):
        t0, t1 = 0.0, 1.0
        dx, dy = q[0] - p[0], q[1] - p[1]
        for step, room in ((-dx, p[0] - x), (dx, x + w - p[0]), (-dy, p[1] - y), (dy, y + h - p[1])):
            if step == 0:
                if room < 0:
                    break
                continue
            t = room / step
            t0, t1 = (max(t0, t), t1) if step < 0 else (t0, min(t1, t))
            if t0 > t1:
                break
        else:
            return True
    return False


def overlap(a: Rect, b: Rect, margin: float = 0) -> bool:
    return (a[0] - margin < b[0] + b[2] and b[0] - margin < a[0] + a[2]
            and a[1] - margin < b[1] + b[3] and b[1] - margin < a[1] + a[3])


def slot_position(pos: list[float], size: list[float], index: int, output: bool) -> tuple[float, float]:
    """Where the editor draws input or output ``index`` of a node at ``pos`` (measured, see SLOT_INSET)."""
    x = pos[0] + size[0] - SLOT_INSET[1] if output else pos[0] + SLOT_INSET[0]
    return x, pos[1] + SLOT_TOP + SLOT_PITCH * index


def fit_view(boxes: list[Rect]) -> dict:
    """The editor's saved view (``extra.ds``) that shows every box inside VIEW_BOX, centred across, top-aligned."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    width = max(b[0] + b[2] for b in boxes) - x0
    height = max(b[1] + b[3] for b in boxes) - y0
    view_w, view_h = VIEW_BOX[2] - VIEW_BOX[0] - 2, VIEW_BOX[3] - VIEW_BOX[1] - 2  # 1 px margin for rounding
    scale = int(min(view_w / width, view_h / height, MAX_SCALE) * 1000) / 1000  # rounded down: never overflows
    left = VIEW_BOX[0] + 1 + (view_w - width * scale) / 2
    return {"scale": scale, "offset": [round(left / scale - x0, 1), round((VIEW_BOX[1] + 1) / scale - y0, 1)]}


@dataclass(eq=False)
class Group:
    title: str
    members: list[Node]
    color: str

    def bounding(self, extra: Node | None = None, pos: list[float] | None = None) -> Rect | None:
        """Around its placed members (and ``extra`` at ``pos``): title bar above, GROUP_PAD around."""
        boxes = [box(n.pos, n.size, n.type) for n in self.members if n.pos and n is not extra]
        if extra is not None:
            boxes.append(box(pos, extra.size, extra.type))
        if not boxes:
            return None
        x0, y0 = min(b[0] for b in boxes) - GROUP_PAD, min(b[1] for b in boxes) - GROUP_TITLE
        x1 = max(b[0] + b[2] for b in boxes) + GROUP_PAD
        y1 = max(b[1] + b[3] for b in boxes) + GROUP_PAD
        return x0, y0, x1 - x0, y1 - y0


class Graph:
    """A workflow under construction; ``ui()`` and ``api()`` give the two formats.

    Nodes go in columns (``col``; ``columns`` widens some, e.g. ``(WIDE,)``) and links run from left to right.
    ``layout`` gives each node, in the order added, the highest place in its column where nothing covers it,
    its group stays clear of the others, and none of its links passes under a node or through a group's title
    bar (with the spline the editor draws); ``below`` asks for a node whose links must pass under others.
    """

    def __init__(self, columns: tuple[float, ...] = ()) -> None:
        self.columns = columns
        self.nodes: list[Node] = []
        self.links: list[list] = []
        self.groups: list[Group] = []
        self.next_id = 1
        self.laid_out = False

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def width(self, col: int) -> float:
        return self.columns[col] if col < len(self.columns) else NODE_WIDTH

    def x(self, col: int) -> float:
        return LEFT + sum(self.width(c) + COLUMN_GAP for c in range(col))

    def add(self, class_type: str, col: int, title: str | None = None, below: tuple[Node, ...] = (),
            **widgets: Any) -> Node:
        """A node as wide as column ``col``; ``layout`` places it."""
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
        node = Node(self._id(), class_type, col, [self.width(col), height], title, widgets, sockets, outputs,
                    below)
        self.nodes.append(node)
        return node

    def note(self, title: str, text: str, col: int, span: int = 1, level: int = 3) -> Node:
        """A titled Markdown note across ``span`` columns from ``col``, tall enough for its text.

        Each paragraph is a level-3 heading: the editor draws a plain Note in 10 px monospace and Markdown
        body text no larger, unreadable at the zoom that shows a whole graph; its headings are bold and 16/14
        of that size (``level`` 2: 18/14, for a graph that must open zoomed out further)."""
        paragraphs = text.split("\n\n")
        font = NOTE_FONTS[level]
        width = self.x(col + span) - COLUMN_GAP - self.x(col)
        chars_per_line = (width - 2 * NOTE_PADDING) / (NOTE_CHAR_WIDTH * font)
        lines = sum(-(-len(p) // int(chars_per_line)) for p in paragraphs)
        height = 2 * NOTE_PADDING + lines * NOTE_LINE * font + (len(paragraphs) - 1) * NOTE_PARAGRAPH_GAP
        text = "\n\n".join("#" * level + " " + p for p in paragraphs)
        node = Node(self._id(), NOTE_TYPE, col, [width, round(height)], title, {"text": text})
        self.nodes.append(node)
        return node

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

    def group(self, title: str, nodes: list[Node], color: str) -> None:
        """A group around ``nodes`` with its title bar above their badges."""
        self.groups.append(Group(title, nodes, color))

    # ------------------------------------------------------------------------------------------ layout
    def layout(self) -> None:
        """Place every node, in the order added (see the class docstring)."""
        if self.laid_out:
            return
        by_id = {n.id: n for n in self.nodes}
        for node in self.nodes:
            node.pos = [self.x(node.col), self._free_y(node, by_id)]
        self.laid_out = True

    def _group_of(self, node: Node) -> Group | None:
        return next((g for g in self.groups if node in g.members), None)

    def _link_path(self, link: list, by_id: dict[int, Node], moving: Node, pos: list[float]) -> list:
        src, dst = by_id[link[1]], by_id[link[3]]
        start = slot_position(pos if src is moving else src.pos, src.size, link[2], output=True)
        end = slot_position(pos if dst is moving else dst.pos, dst.size, link[4], output=False)
        return link_points(start, end)

    def _fits(self, node: Node, pos: list[float], by_id: dict[int, Node]) -> bool:
        """Whether ``node`` at ``pos`` keeps every rule with the nodes placed so far."""
        placed = [n for n in self.nodes if n.pos and n is not node]
        own = box(pos, node.size, node.type)
        group = self._group_of(node)
        if any(overlap(own, box(n.pos, n.size, n.type), NODE_GAP) for n in placed):
            return False
        frames = {g: g.bounding(node, pos) if g is group else g.bounding() for g in self.groups}
        frames = {g: f for g, f in frames.items() if f is not None}
        if any(overlap(own, lane, LINK_CLEARANCE) or (group in frames and overlap(
                (frames[group][0], frames[group][1], frames[group][2], GROUP_TITLE), lane, LINK_CLEARANCE))
               for lane in self._lanes(node, by_id)):
            return False
        for g, frame in frames.items():
            if g is not group and overlap(own, frame, GROUP_GAP):
                return False
            if g is not group and group in frames and overlap(frames[group], frame, GROUP_GAP):
                return False
            members = [n for n in placed if n in g.members]
            if g is group and any(overlap(frame, box(n.pos, n.size, n.type)) for n in placed
                                  if n not in members):
                return False
        titles = [(f[0], f[1], f[2], GROUP_TITLE) for f in frames.values()]
        for link in self.links:
            ends = {link[1], link[3]}
            touches = node.id in ends
            other = by_id[link[3] if link[1] == node.id else link[1]] if touches else None
            if touches and not other.pos:
                continue
            if not touches and not all(by_id[i].pos for i in ends):
                continue
            path = self._link_path(link, by_id, node, pos)
            if not touches:  # an earlier link must not pass under this node or through its group's title
                if crosses(path, own, LINK_CLEARANCE) or (group in frames and crosses(
                        path, (frames[group][0], frames[group][1], frames[group][2], GROUP_TITLE), LINK_CLEARANCE)):
                    return False
                continue
            obstacles = [box(n.pos, n.size, n.type) for n in placed if n.id not in ends] + titles
            if any(crosses(path, rect, LINK_CLEARANCE) for rect in obstacles):
                return False
        return True

    def _lanes(self, node: Node, by_id: dict[int, Node]) -> list[Rect]:
        """Where the links still waiting for their target will run: straight on from their output across the
        columns between (a link is straightest when its target is placed level with it)."""
        lanes = []
        for link in self.links:
            src, dst = by_id[link[1]], by_id[link[3]]
            if src.pos and not dst.pos and dst is not node and src is not node and dst.col > src.col + 1:
                x0, y = slot_position(src.pos, src.size, link[2], output=True)
                x1 = self.x(dst.col) - GROUP_PAD - LINK_CLEARANCE - 1  # short of the target column's groups
                lanes.append((x0 + SLOT_INSET[1] + 1, y - 2, x1 - x0 - SLOT_INSET[1] - 1, 4))
        return lanes

    def _free_y(self, node: Node, by_id: dict[int, Node]) -> float:
        """The highest y in the node's column, under the nodes added before it, where it fits, trying first
        the heights that make one of its links straight; nodes in ``below`` keep its first slot's links under
        them. Raises ValueError when nothing fits (change the columns or the order the nodes are added)."""
        floor = TOP
        x = self.x(node.col)
        for other in self.nodes[:self.nodes.index(node)]:  # under the nodes added before it in its columns
            if other.pos[0] < x + node.size[0] and x < other.pos[0] + other.size[0]:
                b = box(other.pos, other.size, other.type)
                floor = max(floor, b[1] + b[3] + NODE_GAP + TITLE_HEIGHT + BADGE_HEIGHT)
        for other in node.below:
            b = box(other.pos, other.size, other.type)
            floor = max(floor, b[1] + b[3] + GROUP_PAD + 2 * LINK_CLEARANCE - SLOT_TOP)  # under its group too
        straight = []
        for link in self.links:
            if link[3] == node.id and by_id[link[1]].pos:
                straight.append(by_id[link[1]].pos[1] + SLOT_PITCH * (link[2] - link[4]))
            if link[1] == node.id and by_id[link[3]].pos:
                straight.append(by_id[link[3]].pos[1] + SLOT_PITCH * (link[4] - link[2]))
        aligned = sorted(s for s in straight if s >= floor - 3 * SLOT_PITCH)
        y = floor
        while not self._fits(node, [self.x(node.col), y], by_id):
            y += 4
            if y > floor + MAX_DROP:
                break
        fitting = [s for s in aligned if s <= y + ALIGN_SLACK and self._fits(node, [self.x(node.col), s], by_id)]
        if fitting:
            return fitting[0]
        if y > floor + MAX_DROP:
            raise ValueError(f"no place in column {node.col} for {node.title or node.type}: its links would "
                             "pass under other nodes or through a group's title")
        return y

    # ------------------------------------------------------------------------------------------ output
    def _boxes(self) -> list[Rect]:
        return [box(n.pos, n.size, n.type) for n in self.nodes]

    def _sorted(self) -> list[Node]:
        """Dependency order of the working nodes (the editor's 'order' field)."""
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
            if not n.is_note:
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
        self.layout()
        notes = [n for n in self.nodes if n.is_note]
        entries = [{"id": n.id, "type": NOTE_TYPE, "pos": n.pos, "size": n.size, "flags": {}, "order": i,
                    "mode": 0, "inputs": [], "outputs": [], "title": n.title, "properties": {},
                    "widgets_values": [n.widgets["text"]], "color": NOTE_COLOR, "bgcolor": NOTE_BG}
                   for i, n in enumerate(notes)]
        for order, node in enumerate(self._sorted()):
            entry: dict[str, Any] = {"id": node.id, "type": node.type, "pos": node.pos, "size": node.size,
                                     "flags": {}, "order": order + len(notes), "mode": 0,
                                     "inputs": node.inputs,
                                     "outputs": [{**o, "links": o["links"] or None} for o in node.outputs],
                                     "properties": {"Node name for S&R": node.type},
                                     "widgets_values": self._widget_values(node)}
            if node.title:
                entry["title"] = node.title
            entries.append(entry)
        groups = [{"id": i + 1, "title": g.title, "bounding": list(g.bounding()), "color": g.color,
                   "font_size": 24, "flags": {}} for i, g in enumerate(self.groups)]
        return {"id": "00000000-0000-4000-8000-000000000000", "revision": 0, "last_node_id": self.next_id - 1,
                "last_link_id": len(self.links), "nodes": entries, "links": self.links,
                "groups": groups, "config": {},
                "extra": {"ds": fit_view(self._boxes() + [g["bounding"] for g in groups])},
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
MID = 240  # a column of small AdaIN nodes (Encode, Blend, Decode...)


def models(g: Graph, col: int) -> tuple[Node, Node]:
    """The two loaders in one group."""
    enc = g.add("AdaINEncoderLoader", col, encoder_name=ENCODER_FILE)
    dec = g.add("AdaINDecoderLoader", col, decoder_name=DECODER_FILE)
    g.group("Models", [enc, dec], GROUP_COLORS["models"])
    return enc, dec


def image(g: Graph, file: str, title: str, col: int, below: tuple[Node, ...] = ()) -> Node:
    return g.add("LoadImage", col, title=title, below=below, image=file)


MODELS_NOTE = ("Models: put " + ENCODER_FILE + " (VGG19, Simonyan & Zisserman, CC BY 4.0) in ComfyUI/models/adain, "
               "or run 'python -m adain_nodes download'. The decoder ships in the pack's weights/ folder.")


def _one_node_transfer(group: str, prefix: str, note_title: str, note: str, **widgets) -> Graph:
    """Models, a content photo and a style image into one AdaIN Style Transfer (with ``widgets``), saved."""
    g = Graph(columns=(WIDE, NODE_WIDTH, 300))
    enc, dec = models(g, 0)
    content = image(g, "chelsea.jpg", "Content photo", 1)
    style = image(g, "style_brushstrokes.jpg", "Style image", 1)
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    t = g.add("AdaINStyleTransfer", 2, alpha=1.0, preserve_color="off", **widgets)
    for name, node in (("encoder", enc), ("decoder", dec), ("content_image", content), ("style_image", style)):
        g.connect(node, 0, t, name)
    g.group(group, [t], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 3, filename_prefix=prefix)
    g.connect(t, "image", save, "images")
    g.note(note_title, note + "\n\n" + MODELS_NOTE, 0)
    return g


def ex_style_transfer() -> Graph:
    return _one_node_transfer("Style transfer", "adain/01_style_transfer", "AdaIN style transfer",
                              "AdaIN style transfer in one node (Huang & Belongie 2017).\n\nThe photo keeps its "
                              "layout, the style image gives colours and texture; alpha trades content (0) for style "
                              "(1).")


def ex_style_refine() -> Graph:
    return _one_node_transfer("Refined style transfer", "adain/14_style_refine", "More style, fitted to this picture",
                              "style_refine 1: one gradient step on the paper's own loss adjusts what AdaIN asks of "
                              "the decoder for this picture before it is decoded. A quarter to a third more style "
                              "than example 01's one transfer of the same pair, for three to four times the time.",
                              style_refine=1)


def ex_style_boost() -> Graph:
    return _one_node_transfer("Boosted style transfer", "adain/13_style_boost", "More style than alpha 1",
                              "style_boost 0.5: a first transfer measures what the decoder misses of the style's "
                              "statistics, a second asks half that much past them. About 15 % more style than example "
                              "01's one transfer of the same pair, for about twice the time.", style_boost=0.5)


def ex_refine_modular() -> Graph:
    g = Graph(columns=(NODE_WIDTH, WIDE, MID, MID, MID, MID, MID))
    style = image(g, "style_brushstrokes.jpg", "Style image", 0)
    enc, dec = models(g, 1)
    content = image(g, "chelsea.jpg", "Content photo", 0, below=(enc, dec))
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    # Stats, Refine, Encode in this order: the refine node's links then pass between the two encodings.
    s = g.add("AdaINStyleStats", 2, average_batch=False)
    r = g.add("AdaINRefineStyle", 3, style_refine=1)
    e = g.add("AdaINEncode", 2)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    for name, node in (("encoder", enc), ("decoder", dec), ("style", s)):
        g.connect(node, 0, r, name)
    g.connect(content, "IMAGE", r, "content_image")
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    g.group("Encode once", [s, e], GROUP_COLORS["style"])
    g.group("Refine once", [r], GROUP_COLORS["style"])
    chains = [_blend_decode(g, dec, e, r, 4, f"AdaIN Blend (alpha {alpha})", alpha) for alpha in REFINED_ALPHAS]
    g.group("Blend at alpha " + " | ".join(str(a) for a in REFINED_ALPHAS) + ", decode",
            [n for chain in chains for n in chain], GROUP_COLORS["transfer"])
    for alpha, (_, d) in zip(REFINED_ALPHAS, chains):
        save = g.add("SaveImage", 6, filename_prefix=f"adain/15_refined_alpha_{int(alpha * 100):03d}")
        g.connect(d, 0, save, "images")
    g.note("Refine once, blend at any alpha", "AdaIN Refine Style: one gradient step on the paper's own loss "
           "adjusts the style's statistics for this photo. Blend at any alpha; the step is paid once. Alpha 1 is "
           "example 14's picture.\n\n" + MODELS_NOTE, 2, span=3, level=2)
    return g


REFINED_ALPHAS = (1.0, 0.6)


def _modular_front(g: Graph, content_file: str, style_file: str,
                   titles: tuple[str, str] = ("Content photo", "Style image")) -> tuple[Node, Node, Node, Node, Node]:
    """The images in column 0, the models in column 1 between the images' links (which pass above and under
    them), the encodings in column 2."""
    content = image(g, content_file, titles[0], 0)
    enc, dec = models(g, 1)
    style = image(g, style_file, titles[1], 0, below=(enc, dec))
    g.group("Images", [content, style], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 2)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    s = g.add("AdaINStyleStats", 2, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    return enc, dec, e, s, content


def _blend_decode(g: Graph, dec: Node, features: Node, style: Node, col: int, title: str | None = None,
                  alpha: float = 1.0) -> tuple[Node, Node]:
    """AdaIN Blend in column ``col``, Decode in the next."""
    b = g.add("AdaINBlend", col, title=title, alpha=alpha)
    g.connect(features, 0, b, "features")
    g.connect(style, 0, b, "style")
    d = g.add("AdaINDecode", col + 1)
    g.connect(dec, 0, d, "decoder")
    g.connect(b, 0, d, "features")
    return b, d


def ex_modular() -> Graph:
    g = Graph(columns=(NODE_WIDTH, WIDE, MID, MID, MID))
    _, dec, e, s, _ = _modular_front(g, "coffee.jpg", "style_mosaic.jpg")
    g.group("Encode once", [e, s], GROUP_COLORS["style"])
    b, d = _blend_decode(g, dec, e, s, 3)
    g.group("AdaIN and decode", [b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 5, filename_prefix="adain/02_modular")
    g.connect(d, 0, save, "images")
    g.note("Modular graph", "The same transfer in steps: Encode the content, take the style's statistics, Blend "
           "them with AdaIN, Decode.\n\nEncoded features and styles feed any number of Blend nodes: nothing is "
           "computed twice.\n\n" + MODELS_NOTE, 2, span=4)
    return g


ALPHAS = (0.25, 0.5, 1.0)


def ex_tradeoff() -> Graph:
    g = Graph(columns=(WIDE, MID, MID, MID, NODE_WIDTH))
    dec = g.add("AdaINDecoderLoader", 0, decoder_name=DECODER_FILE)
    enc = g.add("AdaINEncoderLoader", 0, encoder_name=ENCODER_FILE)
    content = image(g, "astronaut.jpg", "Content photo", 0)
    style = image(g, "style_waves.jpg", "Style image", 0)
    g.group("Models and images", [dec, enc, content, style], GROUP_COLORS["inputs"])
    decodes = [g.add("AdaINDecode", 3) for _ in ALPHAS]  # first: the decoder's links run above the others
    for d in decodes:
        g.connect(dec, 0, d, "decoder")
    e = g.add("AdaINEncode", 1)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    s = g.add("AdaINStyleStats", 1, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    g.group("Encode once", [e, s], GROUP_COLORS["style"])
    blends = []
    for alpha, d in zip(ALPHAS, decodes):
        b = g.add("AdaINBlend", 2, title=f"AdaIN Blend (alpha {alpha})", alpha=alpha)
        g.connect(e, 0, b, "features")
        g.connect(s, 0, b, "style")
        g.connect(b, 0, d, "features")
        blends.append(b)
    g.group("Blend at alpha " + " | ".join(str(a) for a in ALPHAS) + ", decode", blends + decodes,
            GROUP_COLORS["transfer"])
    for alpha, d in zip(ALPHAS, decodes):
        save = g.add("SaveImage", 4, filename_prefix=f"adain/03_alpha_{int(alpha * 100):03d}")
        g.connect(d, 0, save, "images")
    g.note("Content-style trade-off", "alpha " + ", ".join(str(a) for a in ALPHAS) + " from top to bottom. Low "
           "alpha keeps more of the photo; 1.0 is the full style.\n\nContent and style are encoded once, for all "
           "three.\n\n" + MODELS_NOTE, 1, level=2)
    return g


def ex_interpolation() -> Graph:
    g = Graph(columns=(240, WIDE, 220, 220, 220, 220, 240))
    weights = (0.7, 0.3)
    style_1 = image(g, "style_brushstrokes.jpg", "Style 1", 0)
    enc, dec = models(g, 1)
    style_2 = image(g, "style_waves.jpg", "Style 2", 0, below=(enc, dec))
    g.group("Two styles", [style_1, style_2], GROUP_COLORS["inputs"])
    content = image(g, "coffee.jpg", "Content photo", 1)
    stats = []
    for i, st in enumerate((style_1, style_2)):
        stats.append(g.add("AdaINStyleStats", 2, title=f"Style {i + 1} statistics"))
        g.connect(enc, 0, stats[-1], "encoder")
        g.connect(st, "IMAGE", stats[-1], "image")
    e = g.add("AdaINEncode", 2)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    g.group("Encode", stats + [e], GROUP_COLORS["style"])
    mix = g.add("AdaINMixStyles", 3, weight_1=weights[0], weight_2=weights[1], weight_3=0.0, weight_4=0.0)
    for i in range(2):
        g.connect(stats[i], 0, mix, f"style_{i + 1}")
    b, d = _blend_decode(g, dec, e, mix, 4)
    g.group("Mix, blend, decode", [mix, b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 6, filename_prefix="adain/04_interpolation")
    g.connect(d, 0, save, "images")
    g.note("Style interpolation", "Two styles mixed by weight (0.7 / 0.3, normalised to sum 1); Mix Styles takes "
           "up to four. A weight of 0 drops a style.\n\n" + MODELS_NOTE, 3, span=4, level=2)
    return g


def ex_spatial() -> Graph:
    g = Graph(columns=(240, WIDE, 240, 240, 220, 220, 240))
    style_a = image(g, "style_brushstrokes.jpg", "Style for the cat", 0)
    enc, dec = models(g, 1)
    style_b = image(g, "style_mosaic.jpg", "Style for the background", 0, below=(enc, dec))
    g.group("Styles", [style_a, style_b], GROUP_COLORS["inputs"])
    content = image(g, "chelsea.jpg", "Content photo", 1)
    sa = g.add("AdaINStyleStats", 2, title="Cat style")
    sb = g.add("AdaINStyleStats", 2, title="Background style")
    for st, img in ((sa, style_a), (sb, style_b)):
        g.connect(enc, 0, st, "encoder")
        g.connect(img, "IMAGE", st, "image")
    e = g.add("AdaINEncode", 2)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    g.group("Encode", [sa, sb, e], GROUP_COLORS["style"])
    mask_a = image(g, "chelsea_mask_cat.png", "Mask: the cat", 2)
    ba = g.add("AdaINBlend", 3, title="Blend: cat", alpha=1.0)
    g.connect(e, 0, ba, "features")
    g.connect(sa, 0, ba, "style")
    g.connect(mask_a, "MASK", ba, "mask")
    mask_b = image(g, "chelsea_mask_background.png", "Mask: the background", 3)
    bb = g.add("AdaINBlend", 4, title="Blend: background", alpha=1.0)
    g.connect(ba, 0, bb, "features")
    g.connect(sb, 0, bb, "style")
    g.connect(mask_b, "MASK", bb, "mask")
    d = g.add("AdaINDecode", 5)
    g.connect(dec, 0, d, "decoder")
    g.connect(bb, 0, d, "features")
    g.group("Two masked blends", [ba, bb, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 6, filename_prefix="adain/05_spatial_control")
    g.connect(d, 0, save, "images")
    g.note("Spatial control", "Brush strokes on the cat, mosaic on the background. Each Blend stylizes only "
           "inside its mask; two chained blends paint two styles.\n\nMask previews show the photo with the masked "
           "area cut out (a mask is a PNG's transparent part).\n\n" + MODELS_NOTE, 4, span=3, level=2)
    return g


def ex_color() -> Graph:
    g = Graph(columns=(WIDE, 300, NODE_WIDTH, NODE_WIDTH))
    enc = g.add("AdaINEncoderLoader", 0, encoder_name=ENCODER_FILE)
    dec = g.add("AdaINDecoderLoader", 0, decoder_name=DECODER_FILE)
    content = image(g, "astronaut.jpg", "Content photo", 0)
    style = image(g, "style_dots.jpg", "Style image", 0)
    g.group("Models and images", [enc, dec, content, style], GROUP_COLORS["inputs"])
    m = g.add("AdaINMatchColor", 1)
    g.connect(style, "IMAGE", m, "image")
    g.connect(content, "IMAGE", m, "reference")
    p = g.add("PreviewImage", 3, title="Recoloured style")
    g.connect(m, 0, p, "images")
    for mode, prefix in (("match style colors", "match"), ("luminance only", "luminance")):
        t = g.add("AdaINStyleTransfer", 1, title=f"Transfer ({mode})", alpha=1.0, preserve_color=mode)
        for name, node in (("encoder", enc), ("decoder", dec), ("content_image", content), ("style_image", style)):
            g.connect(node, 0, t, name)
        save = g.add("SaveImage", 2, filename_prefix="adain/06_" + prefix)
        g.connect(t, 0, save, "images")
    g.note("Colour preservation", "Top: the style recoloured to the photo's colours first (Match Color shows it, "
           "right), then transferred; bottom: only brightness stylized, the photo's colours kept. "
           "'01_style_transfer' shows the style's own colours.\n\n" + MODELS_NOTE, 3, level=2)
    return g


def ex_frames() -> Graph:
    g = Graph(columns=(NODE_WIDTH, WIDE, MID, MID, MID))
    _, dec, e, s, _ = _modular_front(g, "coffee_frames.webp", "style_waves.jpg",
                                     titles=("Frames (animated WebP)", "Style image"))
    e.title, s.title = "Encode all frames", "Style statistics (once)"
    g.group("Encode", [e, s], GROUP_COLORS["style"])
    b, d = _blend_decode(g, dec, e, s, 3, alpha=0.9)
    g.group("Every frame", [b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 5, filename_prefix="adain/07_frame")
    g.connect(d, 0, save, "images")
    g.note("A batch of frames", "Load Image reads every frame of the animated WebP. The style statistics are "
           "computed once for all frames, so the look stays stable; Save Image writes one PNG per frame.\n\n"
           + MODELS_NOTE, 4, span=2)
    return g


def ex_video() -> Graph:
    g = Graph(columns=(WIDE, WIDE, NODE_WIDTH, NODE_WIDTH, NODE_WIDTH))
    load = g.add("LoadVideo", 0, title="Clip", file="chelsea_pan.mp4")
    enc, dec = models(g, 1)
    parts = g.add("GetVideoComponents", 1, below=(enc, dec))
    g.connect(load, 0, parts, "video")
    style = image(g, "style_brushstrokes.jpg", "Style image", 0, below=(load,))
    g.group("Clip and style", [load, style], GROUP_COLORS["inputs"])
    v = g.add("AdaINVideoStyleTransfer", 2)
    g.connect(enc, 0, v, "encoder")
    g.connect(dec, 0, v, "decoder")
    g.connect(parts, "images", v, "frames")
    g.connect(style, "IMAGE", v, "style_image")
    g.group("Stylize every frame, stably", [v], GROUP_COLORS["transfer"])
    create = g.add("CreateVideo", 3)
    g.connect(v, 0, create, "images")
    g.connect(parts, "audio", create, "audio")
    g.connect_widget(parts, "fps", create, "fps")
    save = g.add("SaveVideo", 4, filename_prefix="adain/12_video")
    g.connect(create, 0, save, "video")
    g.group("Video out", [create, save], GROUP_COLORS["output"])
    g.note("Video that holds still", "Load Video -> Get Video Components -> AdaIN Video Style Transfer -> Create "
           "Video -> Save Video; the audio and frame rate pass through. The clip pans 3 px per frame, which "
           "per-frame stylization turns into shimmer: the video node keeps the picture on the networks' grid as "
           "the camera moves and pools AdaIN's statistics over recent frames.\n\n" + MODELS_NOTE, 2, span=3, level=2)
    return g


PRESET = "adain_example_mosaic"


def ex_save_preset() -> Graph:
    g = Graph(columns=(WIDE, NODE_WIDTH, MID, WIDE, NODE_WIDTH))
    enc = g.add("AdaINEncoderLoader", 0, encoder_name=ENCODER_FILE)
    g.group("Encoder", [enc], GROUP_COLORS["models"])
    style = image(g, "style_mosaic.jpg", "Style image", 1)
    g.group("Style", [style], GROUP_COLORS["inputs"])
    s = g.add("AdaINStyleStats", 2, average_batch=False)
    g.connect(enc, 0, s, "encoder")
    g.connect(style, "IMAGE", s, "image")
    save = g.add("AdaINSaveStyle", 3, name=PRESET, overwrite=True)
    g.connect(s, 0, save, "style")
    g.group("Statistics to preset", [s, save], GROUP_COLORS["style"])
    shown = g.add("PreviewAny", 4, title="Preset written to")
    g.connect(save, "saved_to", shown, "source")
    g.note("Save a style preset", "The style's statistics (a few kB) go to ComfyUI/models/adain_styles/" + PRESET
           + ".safetensors (headless: --styles-dir); 'Preview as Text' shows the file written.\n\n"
           "'09_style_preset_use' then stylizes with it, without the style image.", 0)
    return g


def ex_use_preset() -> Graph:
    g = Graph(columns=(NODE_WIDTH, WIDE, MID, MID, MID))
    content = image(g, "chelsea.jpg", "Content photo", 0)
    g.group("Content", [content], GROUP_COLORS["inputs"])
    enc, dec = models(g, 1)
    preset = g.add("AdaINLoadStyle", 1, preset=PRESET + ".safetensors")
    g.group("Style preset", [preset], GROUP_COLORS["inputs"])
    e = g.add("AdaINEncode", 2)
    g.connect(enc, 0, e, "encoder")
    g.connect(content, "IMAGE", e, "image")
    g.connect(dec, 0, e, "decoder")
    g.group("Encode", [e], GROUP_COLORS["style"])
    b, d = _blend_decode(g, dec, e, preset, 3)
    g.group("Blend, decode", [b, d], GROUP_COLORS["transfer"])
    save = g.add("SaveImage", 5, filename_prefix="adain/09_style_preset")
    g.connect(d, 0, save, "images")
    g.note("Use a saved style preset", "No style image, no style encoding. Run '08_style_preset_save' first; a "
           "preset works only with the encoder that made it.\n\n" + MODELS_NOTE, 2, span=4, level=2)
    return g


def _whole_and_masked(g: Graph, class_type: str, source: Node, reference: Node, mask: Node, save_type: str,
                      prefix: str, what: str, col: int) -> list[Node]:
    """Two statistics-matching nodes in column ``col``: the whole input at strength 1, the masked part at 0.8;
    their saves in the next column."""
    nodes, saves = [], []
    input_name, save_input = ("image", "images") if save_type == "SaveImage" else ("latent", "samples")
    for strength, masked in ((1.0, False), (0.8, True)):
        a = g.add(class_type, col, title=f"{TITLES[class_type]} (masked)" if masked else None, strength=strength)
        g.connect(source, 0, a, input_name)
        g.connect(reference, 0, a, "reference")
        if masked:
            g.connect(mask, "MASK", a, "mask")
        nodes.append(a)
    for a, masked in zip(nodes, (False, True)):
        save = g.add(save_type, col + 1, filename_prefix=f"{prefix}_{'masked' if masked else 'whole'}")
        g.connect(a, 0, save, save_input)
        saves.append(save)
    g.group(f"Whole {what} | inside the mask", nodes, GROUP_COLORS["transfer"])
    return nodes


def ex_image_statistics() -> Graph:
    g = Graph(columns=(NODE_WIDTH, 300, NODE_WIDTH))
    photo = image(g, "chelsea.jpg", "Photo", 0)
    reference = image(g, "coffee.jpg", "Reference colours", 0)
    mask = image(g, "chelsea_mask_cat.png", "Mask: the cat", 0)
    g.group("Images", [photo, reference, mask], GROUP_COLORS["inputs"])
    _whole_and_masked(g, "AdaINImage", photo, reference, mask, "SaveImage", "adain/10_image", "picture", 1)
    g.note("AdaIN on pixels", "No model: each RGB channel takes the mean and std of the reference's (the "
           "coffee's warm tones). Keeps colours consistent across img2img passes.\n\nTop: the whole picture. "
           "Bottom: only the cat (the mask), at strength 0.8.", 1, level=2)
    return g


def ex_latent_statistics() -> Graph:
    g = Graph(columns=(NODE_WIDTH, 300, NODE_WIDTH, 300))
    latent = g.add("LoadLatent", 0, title="Latent to adjust", latent="chelsea.latent")
    reference = g.add("LoadLatent", 0, title="Reference latent", latent="style_waves.latent")
    mask = image(g, "chelsea_mask_cat.png", "Mask: the cat", 0)
    g.group("Latents and mask", [latent, reference, mask], GROUP_COLORS["inputs"])
    adjusted = _whole_and_masked(g, "AdaINLatent", latent, reference, mask, "SaveLatent", "adain/11_latent",
                                 "latent", 1)
    shown = g.add("PreviewAny", 3, title="Adjusted latent (numbers)")
    g.connect(adjusted[1], 0, shown, "source")
    g.note("AdaIN in latent space", "No model: each latent channel takes the reference latent's mean and std (any "
           "channel count: SD1.x, SDXL, SD3, Flux).\n\nThe .latent inputs are stand-ins; in practice connect VAE "
           "Encode or a sampler, then decode. The mask is resized to the latent.\n\nA latent becomes a picture only "
           "through VAE Decode, which needs a model: 'Preview as Text' shows the masked result's numbers instead.",
           2, span=2)
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
    "13_style_boost": ex_style_boost,
    "14_style_refine": ex_style_refine,
    "15_refine_modular": ex_refine_modular,
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
