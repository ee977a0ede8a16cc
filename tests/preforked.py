"""Command-line runs forked from a server that has imported torch once.

Importing torch takes about 2.5 s of CPU, most of what a small CLI run costs; the suite starts the
trainer and ``stylize-dataset`` dozens of times, mostly to kill them at chosen moments. The standard
library's forkserver imports the third-party libraries once; each run is a fresh fork of it that imports
the project's own modules anew, reads the given environment and argv, and runs the module as
``python -m`` would (``__main__``, ``SystemExit`` codes, tracebacks on stderr). Tests that signal a
process group or need a clean interpreter (imports, torchrun) still start real subprocesses.
"""
from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

# Third-party only: the project's modules read environment variables at import, so each run imports them.
PRELOAD = ["torch", "numpy", "PIL.Image", "safetensors.torch"]
_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _main(module: str, argv: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str) -> None:
    """The child: environment, folder and output files as a subprocess would have them, then the module."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    sys.path[:0] = [cwd] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


class Run:
    """A module run in a forked child: ``pid``, ``poll``, ``wait``, ``kill`` and the text it wrote so far."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{module}-{time.monotonic_ns()}"
        self.stdout_path, self.stderr_path = log_dir / f"{stem}.out", log_dir / f"{stem}.err"
        self.process = _forkserver().Process(target=_main, args=(module, list(args), dict(env), str(cwd),
                                                                 str(self.stdout_path), str(self.stderr_path)))
        self.process.start()
        self.pid = self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(self.process.name, timeout)
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()

    def stdout(self) -> str:
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""


def run(module: str, args: list[str], env: dict[str, str], cwd: Path, log_dir: Path,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m module args`` to the end, like ``subprocess.run(..., capture_output=True, text=True)``."""
    child = Run(module, args, env, cwd, log_dir)
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    return subprocess.CompletedProcess([module, *args], code, child.stdout(), child.stderr())
