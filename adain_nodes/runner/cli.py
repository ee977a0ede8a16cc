"""The ``run`` subcommand: run a workflow here, or submit it to a ComfyUI server."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from ..host.paths import MODELS_ENV, STYLES_ENV


class ConsoleReporter:
    """Per-node and overall progress on a text stream (the CLI's stdout)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def node_started(self, index, total, node_id, class_type, title):
        default = _display_name(class_type)
        label = f" '{title}'" if title and title not in (class_type, default) else ""
        self.stream.write(f"[{index}/{total}] node {node_id} {class_type}{label} ... ")
        self.stream.flush()

    def node_finished(self, index, total, node_id, seconds, ui):
        self.line(f"{seconds:.2f} s")


def _display_name(class_type: str) -> str:
    from ..nodes import NODE_DISPLAY_NAME_MAPPINGS
    from .core_nodes import DISPLAY_NAMES

    return {**DISPLAY_NAMES, **NODE_DISPLAY_NAME_MAPPINGS}.get(class_type, class_type)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a ComfyUI workflow (API or editor format) headless, or on a ComfyUI server",
        description="Validate the whole workflow, then execute each node once in dependency order. "
                    "Models are looked up in $ADAIN_MODELS_DIR and the pack's weights/ folder.")
    parser.add_argument("workflow", help="workflow JSON (API format or the editor's UI format), or a PNG "
                                         "saved by ComfyUI")
    parser.add_argument("--input-dir", type=Path, help="folder of LoadImage files (default: the workflow's "
                                                        "sibling input/ folder, else ./input)")
    parser.add_argument("--output-dir", type=Path, default=Path("output"), help="where images are written "
                                                                                "(default ./output)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="change an input before running; NODE is a node id, title or unique class type; "
                             "VALUE is JSON or plain text (repeatable), e.g. --set 7.alpha=0.5")
    parser.add_argument("--models-dir", type=Path, action="append", default=[],
                        help=f"extra folder of encoder/decoder files (prepended to ${MODELS_ENV}; repeatable)")
    parser.add_argument("--styles-dir", type=Path, help=f"folder of style presets (sets ${STYLES_ENV})")
    parser.add_argument("--server", metavar="URL", help="submit to a running ComfyUI (e.g. http://127.0.0.1:8188) "
                                                        "instead of running here")
    parser.add_argument("--validate-only", action="store_true", help="check the workflow and stop")
    parser.set_defaults(handler=run_command)


def _configure_folders(args: argparse.Namespace) -> None:
    if args.models_dir:
        existing = [p for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
        os.environ[MODELS_ENV] = os.pathsep.join([str(p) for p in args.models_dir] + existing)
    if args.styles_dir:
        os.environ[STYLES_ENV] = str(args.styles_dir)


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Exit status 0 on success, 1 on a malformed or invalid workflow or a failed run, 2 on a file that is no
    workflow at all (missing, not UTF-8 JSON, no workflow in the PNG)."""
    from .core_nodes import Folders
    from .execute import NodeExecutionError, execute_prompt
    from .graph import UnreadableWorkflow, WorkflowError
    from .run import default_input_dir, prepare

    _configure_folders(args)
    reporter = ConsoleReporter(out)
    input_dir = args.input_dir if args.input_dir is not None else default_input_dir(args.workflow)
    folders = Folders(input_dir, args.output_dir)
    try:
        workflow, validation, registry = prepare(args.workflow, folders, args.overrides)
    except WorkflowError as exc:
        reporter.line(f"error: {exc}")
        return 2 if isinstance(exc, UnreadableWorkflow) else 1
    reporter.line(f"workflow {args.workflow} ({workflow.format} format, {len(workflow.prompt)} nodes)")
    if args.server:
        return _run_on_server(args, workflow, input_dir, reporter)
    if not validation.ok:
        reporter.line(validation.message())
        reporter.line("nothing was executed")
        return 1
    if args.validate_only:
        reporter.line(f"valid: {len(validation.order)} node(s) to run for output(s) {', '.join(validation.outputs)}")
        return 0
    extra = {"workflow": workflow.ui} if workflow.ui is not None else None
    started = time.perf_counter()
    try:
        result = execute_prompt(workflow.prompt, validation.order, registry, extra, reporter)
    except NodeExecutionError as exc:
        reporter.line("failed")
        reporter.line(str(exc))
        return 1
    reporter.line(f"done: {len(validation.order)} node(s) in {time.perf_counter() - started:.1f} s")
    for record in folders.written:
        reporter.line(f"  wrote {record['path']}")
    for node_id, ui in result.ui.items():
        for text in ui.get("text", []):
            reporter.line(f"  node {node_id}: {text}")
    return 0


def _run_on_server(args: argparse.Namespace, workflow, input_dir: Path, reporter: ConsoleReporter) -> int:
    from .server import ServerError, run_on_server

    uploads = input_dir if args.input_dir is not None else None
    try:
        written = run_on_server(args.server, workflow.prompt, workflow.ui, args.output_dir, uploads, reporter.line)
    except ServerError as exc:
        reporter.line(str(exc))
        return 1
    reporter.line(f"done on {args.server}")
    for path in written:
        reporter.line(f"  wrote {path}")
    return 0
