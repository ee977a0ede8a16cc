"""Which styles each content image gets, where its outputs go, and which rank makes them.

Everything is a pure function of the seed, the relative paths and the sorted style list, so any
number of processes, in any order, on any rerun, agree on every output without talking.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import PurePosixPath

STYLIZED_INFIX = "-stylized-"  # the reference tool's naming: {content}-stylized-{style}{content suffix}


@dataclass(frozen=True)
class Job:
    """One output: a content image stylized with one style image (paths relative to their roots)."""

    content: str
    style: str
    output: str


def choose_styles(content: str, style_count: int, per_image: int, seed: int) -> list[int]:
    """``per_image`` distinct style indices for ``content``, drawn from a generator seeded by its path.

    Python's ``random.Random`` seeded by an integer gives the same draws in every process and
    Python version; the integer is a hash of the seed and the path, never Python's salted ``hash``.
    """
    digest = hashlib.sha256(f"{seed}\0{content}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).sample(range(style_count), per_image)


def output_name(content: str, style: str) -> str:
    """``class/img-stylized-style.jpg`` for content ``class/img.jpg``; a nested style keeps its folders in
    the name (``a/b.jpg`` -> ``a_b``) so two styles of the same name never share an output."""
    path, style_path = PurePosixPath(content), PurePosixPath(style)
    tag = style_path.with_suffix("").as_posix().replace("/", "_")
    return str(path.with_name(f"{path.stem}{STYLIZED_INFIX}{tag}{path.suffix}"))


def plan_jobs(contents: list[str], styles: list[str], per_image: int, seed: int) -> list[list[Job]]:
    """The jobs of each content image, in the order of ``contents``."""
    if per_image < 1 or per_image > len(styles):
        raise ValueError(f"--styles-per-image must be from 1 to the number of style images ({len(styles)}), "
                         f"got {per_image}")
    plan = []
    for content in contents:
        chosen = [styles[i] for i in choose_styles(content, len(styles), per_image, seed)]
        plan.append([Job(content, style, output_name(content, style)) for style in chosen])
    return plan


def shard(items: list, rank: int, world_size: int) -> list:
    """Rank ``rank``'s share: every ``world_size``-th item, so classes and image sizes spread evenly."""
    return items[rank::world_size]
