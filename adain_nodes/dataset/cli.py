"""The ``stylize-dataset`` subcommand."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..models.precision import PRECISIONS
from ..refine import MAX_STEPS as REFINE_MAX_STEPS
from .stylize import Settings

DEFAULTS = Settings(Path(), Path(), Path())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stylize-dataset", help="stylize a whole image dataset (Stylized-ImageNet style), resumable, on torchrun",
        description="Stylize every image under --content with styles drawn from --style, mirroring the content "
                    "tree in --out, with OUT/manifest.jsonl listing every output. The style an image gets depends "
                    "only on --seed and its relative path. Run it again to finish an interrupted run; "
                    "torchrun --nproc_per_node N -m adain_nodes stylize-dataset ... shares the work out.")
    parser.add_argument("--content", type=Path, required=True, help="folder of content images (nested folders kept)")
    parser.add_argument("--style", type=Path, required=True, help="folder of style images (nested)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--styles-per-image", type=int, default=DEFAULTS.styles_per_image,
                        help="distinct styles per content image, one output each (default %(default)s)")
    parser.add_argument("--alpha", type=float, default=DEFAULTS.alpha,
                        help="content-style trade-off from 0 to 1 (default %(default)s)")
    parser.add_argument("--style-boost", type=float, default=DEFAULTS.style_boost,
                        help="more style than alpha 1: decode twice, the second time asking this fraction past what "
                             "the first missed of the style's statistics (0.5 measured best; about twice the time; "
                             "default %(default)s)")
    parser.add_argument("--style-refine", type=int, default=DEFAULTS.style_refine,
                        help=f"more style than alpha 1, fitted to each pair: this many gradient steps on the paper's "
                             f"loss (0 to {REFINE_MAX_STEPS}; 1 step about 3x the time; default %(default)s)")
    parser.add_argument("--content-size", type=int, default=DEFAULTS.content_size,
                        help="resize content images to this short side; 0 keeps their size (default %(default)s)")
    parser.add_argument("--style-size", type=int, default=DEFAULTS.style_size,
                        help="resize style images to this short side; 0 keeps their size (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help="seed of the style choice (default %(default)s)")
    parser.add_argument("--encoder", default=DEFAULTS.encoder,
                        help="encoder file: a path or a name in the models folder (default %(default)s)")
    parser.add_argument("--decoder", default=DEFAULTS.decoder,
                        help="decoder file: a path or a name in the models folder (default %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision,
                        help="auto: bf16 on CPUs with AVX-512 BF16 or AMX, else fp32; fp16 on GPUs "
                             "(default %(default)s)")
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers,
                        help="image-loading worker processes per rank (default %(default)s)")
    parser.add_argument("--threads", type=int, default=DEFAULTS.threads,
                        help="CPU threads per rank, each stylizing its own image; 0: the cores split between the ranks "
                             "of a machine")
    parser.add_argument("--retry-failed", action="store_true",
                        help="try the outputs the manifest lists as failed again (after fixing their files)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import AdaINInputError, WeightFileError
    from .stylize import stylize_dataset

    if not args.verbose:
        logging.getLogger("adain_nodes.dataset").setLevel(logging.INFO)  # progress lines by default
    in_range = (0.0 <= args.alpha <= 1.0 and 0.0 <= args.style_boost <= 1.0
                and 0 <= args.style_refine <= REFINE_MAX_STEPS)
    if not in_range or min(args.content_size, args.style_size, args.workers, args.threads) < 0:
        print(f"error: --alpha and --style-boost must be from 0 to 1, --style-refine from 0 to {REFINE_MAX_STEPS}; "
              "sizes, --workers and --threads must be >= 0", file=sys.stderr)
        return 2
    settings = Settings(args.content, args.style, args.out, args.styles_per_image, args.alpha, args.content_size,
                        args.style_size, args.seed, args.encoder, args.decoder, args.precision, args.workers,
                        args.threads, args.retry_failed, args.style_boost, args.style_refine)
    try:
        counts = stylize_dataset(settings)
    except (AdaINInputError, WeightFileError, ValueError, OSError) as exc:  # OSError: a full disk, a file limit
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{key}={value}" for key, value in counts.items()))
    return 0
