"""Walking a folder tree that may contain links: each real directory is visited once, so every walk ends, and
only regular files are yielded, so no reader ever blocks on a named pipe or a device."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def is_regular_file(path: str | os.PathLike) -> bool:
    """A regular file (through links): not a folder, named pipe, socket or device, which a reader would
    block on (a FIFO called x.jpg hangs an open() forever) or read without end."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def walk_files(root: str | os.PathLike) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, following links to folders (users link their collections
    in) but entering each real directory only once: a link loop (a folder linked into itself or an
    ancestor) would otherwise make the walk endless, or exponential in the number of loops. Special files
    (named pipes, sockets, devices) and broken links are skipped with a warning."""
    seen = {os.path.realpath(root)}
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in list(dirs):
            real = os.path.realpath(os.path.join(folder, name))
            if real in seen:
                dirs.remove(name)
            seen.add(real)
        for name in sorted(files):
            path = Path(folder, name)
            if is_regular_file(path):
                yield path
            else:
                log.warning("skipping %s: not a regular file", ascii(str(path))[1:-1])
