"""Which styles each content image gets, where its outputs go, and which rank makes them.

Everything is a pure function of the seed, the relative paths and the sorted style list, so any
number of processes, in any order, on any rerun, agree on every output without talking.
"""
from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import PurePosixPath

STYLIZED_INFIX = "-stylized-"  # the reference tool's naming: {content}-stylized-{style}{content suffix}
# What a write adds to an output's name for its private folder (atomic_files: ".NAME.<8 hex>.tmp").
WRITE_FOLDER_EXTRA = len("..12345678.tmp")
# The longest path the operating system opens (Linux PATH_MAX, counting the final NUL).
PATH_MAX = 4096


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


def style_tag(style: str) -> str:
    """What names a style in its outputs: a nested style keeps its folders (``a/b.jpg`` -> ``a_b``)."""
    return PurePosixPath(style).with_suffix("").as_posix().replace("/", "_")


def output_name(content: str, style: str) -> str:
    """``class/img-stylized-style.jpg`` for content ``class/img.jpg``."""
    path = PurePosixPath(content)
    return str(path.with_name(f"{path.stem}{STYLIZED_INFIX}{style_tag(style)}{path.suffix}"))


def shown(name: str) -> str:
    """A file name as text that prints and stores safely: bytes that are not UTF-8 as ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def name_problem(name: str) -> str | None:
    """Why a file name found on disk cannot be planned with (None if it can): names are hashed, stored in the
    manifest and shown as UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"the file name {shown(name)!r} is not valid UTF-8; rename the file"
    return None


def output_problem(out: str | os.PathLike, output: str, name_max: int) -> str | None:
    """Why ``output`` cannot be written under ``out`` on a file system whose names have at most ``name_max``
    bytes (None if it can): every folder, and the file with its write folder's extra characters, must fit."""
    parts = PurePosixPath(output).parts
    sizes = [len(os.fsencode(part)) for part in parts]
    if any(size > name_max for size in sizes[:-1]) or sizes[-1] + WRITE_FOLDER_EXTRA > name_max:
        return (f"the output name {output!r} is longer than the file system allows ({name_max} bytes a name, "
                f"{WRITE_FOLDER_EXTRA} of them for writing it); shorten the content or style file name")
    if len(os.fsencode(os.path.join(os.path.abspath(out), output))) + WRITE_FOLDER_EXTRA >= PATH_MAX:
        return f"the output path of {output!r} is longer than the {PATH_MAX} bytes the system allows"
    return None


def check_style_tags(styles: list[str]) -> None:
    """Refuse styles whose outputs would share names (``monet.jpg`` and ``monet.png``; ``a/b.jpg`` and
    ``a_b.jpg``): one would overwrite the other's outputs."""
    seen: dict[str, str] = {}
    for style in styles:
        other = seen.setdefault(style_tag(style), style)
        if other != style:
            raise ValueError(f"style images {other!r} and {style!r} would both name their outputs "
                             f"'...{STYLIZED_INFIX}{style_tag(style)}': rename one of them (or move it out of "
                             "--style)")


def plan_jobs(contents: list[str], styles: list[str], per_image: int, seed: int) -> list[list[Job]]:
    """The jobs of each content image, in the order of ``contents``."""
    if per_image < 1 or per_image > len(styles):
        raise ValueError(f"--styles-per-image must be from 1 to the number of style images ({len(styles)}), "
                         f"got {per_image}")
    check_style_tags(styles)
    plan, owners = [], {}
    for content in contents:
        chosen = [styles[i] for i in choose_styles(content, len(styles), per_image, seed)]
        plan.append([Job(content, style, output_name(content, style)) for style in chosen])
        for job in plan[-1]:
            other = owners.setdefault(job.output, job)
            if other is not job:
                raise ValueError(f"content {other.content!r} with style {other.style!r} and content {job.content!r} "
                                 f"with style {job.style!r} would both write {job.output!r}: rename one of the files")
    return plan


def shard(items: list, rank: int, world_size: int) -> list:
    """Rank ``rank``'s share: every ``world_size``-th item, so classes and image sizes spread evenly."""
    return items[rank::world_size]
