"""Writing files whole or not at all, claiming new names atomically, and cleaning up after killed writers.

Each write goes through a private folder ``.NAME.<8 hex>.tmp`` beside the target: the writer and
whatever temporaries its library makes next to the file it is given (safetensors writes a
``.tmpXXXXXX`` beside its target) stay inside it, so a process killed mid-write leaves one folder
whose name says whose it was. The folder holds a ``.lock`` file that its writer keeps locked while
it lives; the lock dies with the process, even under SIGKILL, so a later run can tell a stale
temporary from one that is being written right now and remove only the former.

Publishing: ``atomic_write`` replaces the target (readers never see half a file);
``atomic_write_new`` claims the first name that does not exist yet with a hard link (or an
exclusive create where links are not supported), so two writers can never both get one name.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temporaries are recognised by age alone
    fcntl = None

log = logging.getLogger(__name__)

# ".NAME.<8 hex>.tmp": a write folder (or, from versions before it, a plain temporary file).
TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")
# What safetensors leaves beside its target when killed; only ever removed from a folder the caller owns.
LIBRARY_TEMPORARY_NAME = re.compile(r"^\.tmp\w{6}$")
LOCK_NAME = ".lock"
# The file being written, inside its write folder: a suffix no model or image listing picks up (ComfyUI's own
# listings descend into hidden folders).
WRITTEN_NAME = "content.tmp"
# A write folder without its lock file is younger than this while its writer is still starting.
UNLOCKED_GRACE_SECONDS = 600.0

Writer = Callable[[str], None]
"""``write(path)``: write the whole file at ``path``."""

_swept: set[str] = set()


def _lock(handle) -> bool:
    """Take the lock without waiting; False if another open handle (a living writer) holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _remove_if_abandoned(folder: Path) -> bool:
    """Remove a write folder whose writer is gone, holding its lock meanwhile: a writer that has just made
    the folder and not yet locked it then fails to lock it and starts over under another name."""
    try:
        handle = open(folder / LOCK_NAME, "rb")
    except FileNotFoundError:  # a writer between making the folder and its lock, or one killed there
        try:
            abandoned = time.time() - folder.stat().st_mtime > UNLOCKED_GRACE_SECONDS
        except FileNotFoundError:
            return False
        if abandoned:  # such a folder of ours is empty: one with anything in it is not provably ours
            try:
                folder.rmdir()
            except OSError:
                return False
        return abandoned
    with handle:
        if fcntl is None:
            abandoned = time.time() - os.fstat(handle.fileno()).st_mtime > UNLOCKED_GRACE_SECONDS
        else:
            abandoned = _lock(handle)
        if abandoned:
            shutil.rmtree(folder, ignore_errors=True)
        return abandoned


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None,
                             owned_folder: bool = False) -> list[Path]:
    """Remove what killed writers left in ``folder``: every write folder whose writer is gone, old-style
    temporary files of file ``name`` and, where the caller owns the folder (``owned_folder``), any
    old-style temporary. Never touches an entry that does not follow these patterns."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = TEMPORARY_NAME.match(entry.name)
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if match and _remove_if_abandoned(path):
                removed.append(path)
        elif entry.is_file(follow_symlinks=False):
            if (owned_folder and (match or LIBRARY_TEMPORARY_NAME.match(entry.name))) or (
                    match and name is not None and match.group("name") == name):
                path.unlink(missing_ok=True)
                removed.append(path)
    for path in removed:
        log.info("removed %s, left by an interrupted write", path)
    return removed


def _still_in_place(handle, path: Path) -> bool:
    """The open ``handle`` is still the file at ``path``. A sweeper that locked a writer's new lock file between
    the writer's open and lock has removed the folder before letting go: the writer's lock then succeeds on a
    deleted file, which only this check tells."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (there.st_ino, there.st_dev) == (mine.st_ino, mine.st_dev)


def _locked_write_folder(path: Path):
    """A new write folder for ``path`` and the open, locked handle that marks its writer as alive."""
    while True:
        folder = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        lock = open(folder / LOCK_NAME, "wb")
        if _lock(lock) and _still_in_place(lock, folder / LOCK_NAME):
            return folder, lock
        lock.close()  # a sweeper took it for abandoned between the two steps: it removes (removed) the folder


def _sweep_once(folder: Path) -> None:
    """Clean a folder of stale write folders the first time this process writes into it."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        remove_stale_temporaries(folder)


@contextmanager
def _written_in_private_folder(path: Path, write: Writer) -> Iterator[Path]:
    """Write the file in a locked private folder beside ``path`` and yield it, complete and synced, for the
    caller to publish; the folder goes afterwards, whatever happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    folder, lock = _locked_write_folder(path)
    try:
        target = folder / WRITTEN_NAME
        # mode 0o666 less the umask, like any new file; writers that replace the file (safetensors) make it 0o600
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        mode = os.stat(target).st_mode
        write(str(target))
        os.chmod(target, mode)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.close()


def atomic_write(path: str | os.PathLike, write: Writer) -> None:
    """Call ``write(temporary_path)`` then rename over ``path``: readers never see a half-written file."""
    path = Path(path)
    with _written_in_private_folder(path, write) as tmp:
        os.replace(tmp, path)


def _claim(tmp: Path, path: Path) -> None:
    """Publish ``tmp`` as ``path`` only if ``path`` does not exist (FileExistsError otherwise), atomically."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError as exc:  # file systems without hard links: claim the name first, then fill it
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
            raise
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    os.replace(tmp, path)


def atomic_write_new(candidates: Iterable[str | os.PathLike], write: Writer) -> Path:
    """Write once and publish under the first candidate name nobody has taken, claimed atomically: two
    processes never both get one name. Raises FileExistsError when every candidate exists."""
    names = iter(candidates)
    first = next(names, None)
    if first is None:
        raise ValueError("atomic_write_new needs at least one candidate name")
    first = Path(first)
    with _written_in_private_folder(first, write) as tmp:
        for candidate in itertools.chain([first], map(Path, names)):
            try:
                _claim(tmp, candidate)
                return candidate
            except FileExistsError:
                continue
    raise FileExistsError(f"{first}: the file exists")
