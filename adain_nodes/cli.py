"""``python -m adain_nodes``: command-line tools of the pack.

Each subcommand registers itself through a ``add_parser(subparsers)`` function that sets
``handler`` (a callable taking the parsed arguments and returning an exit status); add new
ones to ``SUBCOMMANDS``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a released .pth (vgg_normalised.pth, decoder.pth) "
                                                   "to .safetensors",
                                   description="Load a .pth safely (weights only) and write a .safetensors file; "
                                               "the encoder is truncated to relu4_1.")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--kind", choices=("auto", "encoder", "decoder"), default="auto")
    parser.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    from .errors import WeightFileError
    from .models.weights import convert_to_safetensors

    try:
        kind = convert_to_safetensors(args.src, args.dst, args.kind)
    except WeightFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {kind} {args.dst}")
    return 0


def _add_download(subparsers: argparse._SubParsersAction) -> None:
    from .download import BASE_URL_ENV, CONVERTED, RELEASED

    names = sorted(CONVERTED) + sorted(RELEASED)
    parser = subparsers.add_parser(
        "download", help="download the released AdaIN weights (hash-verified) and convert them to .safetensors",
        description="Fetch the reference port's released encoder and decoder, verify their size and SHA-256, and "
                    "convert them to safetensors. A broken transfer resumes when run again. "
                    f"{BASE_URL_ENV} replaces the release URL (tests and mirrors only; hashes still apply).")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"files to fetch (default: the converted encoder and decoder); one of {names}")
    parser.add_argument("--dir", type=Path, help="destination folder (default: the first models folder, "
                                                 "$ADAIN_MODELS_DIR or the pack's weights/)")
    parser.add_argument("--keep-pth", action="store_true", help="keep the released .pth after converting it")
    parser.set_defaults(handler=_download)


def _download(args: argparse.Namespace) -> int:
    from .download import CONVERTED, ensure_file, text_progress
    from .errors import AdaINInputError, WeightFileError

    status = 0
    for name in args.names or sorted(CONVERTED):
        try:
            path = ensure_file(name, args.dir, progress=text_progress(name), keep_source=args.keep_pth)
        except (WeightFileError, AdaINInputError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {path}")
    return status


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    from .runner.cli import add_parser

    add_parser(subparsers)


def _add_stylize_dataset(subparsers: argparse._SubParsersAction) -> None:
    from .dataset.cli import add_parser

    add_parser(subparsers)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_convert, _add_download, _add_run,
                                                                    _add_stylize_dataset]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adain_nodes", description="AdaIN style transfer tools.")
    parser.add_argument("--version", action="version", version=f"adain-nodes {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)
