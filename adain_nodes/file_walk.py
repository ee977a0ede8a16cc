"""Walking a folder tree that may contain links: each real directory is visited once, so every walk ends."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator


def walk_files(root: str | os.PathLike) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, following links to folders (users link their collections
    in) but entering each real directory only once: a link loop (a folder linked into itself or an
    ancestor) would otherwise make the walk endless, or exponential in the number of loops."""
    seen = {os.path.realpath(root)}
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in list(dirs):
            real = os.path.realpath(os.path.join(folder, name))
            if real in seen:
                dirs.remove(name)
            seen.add(real)
        for name in sorted(files):
            yield Path(folder, name)
