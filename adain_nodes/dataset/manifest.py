"""The manifest: one JSON record per output, kept correct across kills, reruns and any number of ranks.

While running, each process appends its records to its own part file (no two processes write one
file); a record is appended only after its output was renamed into place. At the end one process
merges the manifest and all parts into a new ``manifest.jsonl`` (atomically, and only if it
changed) and deletes the parts. A kill at any moment leaves outputs that are whole and records
that are whole or a partial last line, which is ignored: outputs without a record get one from
their file on the next run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from pathlib import Path
from typing import IO, Any

from PIL import Image

from ..atomic_files import atomic_write
from .plan import Job

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
PARTS_DIR = ".manifest-parts"
CONFIG_NAME = "stylize-dataset.json"
# The settings key of the style set's identity: every style file's name and content.
STYLES_KEY = "style_files"
OK, FAILED = "ok", "failed"


def ok_record(job: Job, alpha: float, seed: int, size: tuple[int, int], data: bytes) -> dict[str, Any]:
    return {"content": job.content, "style": job.style, "alpha": alpha, "seed": seed, "output": job.output,
            "status": OK, "width": size[0], "height": size[1], "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def failed_record(job: Job, alpha: float, seed: int, reason: str) -> dict[str, Any]:
    return {"content": job.content, "style": job.style, "alpha": alpha, "seed": seed, "output": job.output,
            "status": FAILED, "error": reason}


def record_from_file(job: Job, alpha: float, seed: int, path: Path) -> dict[str, Any]:
    """The record of an output a killed run wrote but did not get to record."""
    data = path.read_bytes()
    with Image.open(path) as img:
        size = img.size
    return ok_record(job, alpha, seed, size, data)


class PartWriter:
    """This process's append-only record file, created on its first record (a run with nothing to do
    writes nothing)."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = out / PARTS_DIR / f"rank{rank:05d}-{secrets.token_hex(4)}.jsonl"
        self._file: IO[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _foreign(path: Path, where: str, what: str) -> ValueError:
    return ValueError(f"{path}{where}: {what} is not a record of stylize-dataset; delete that line (or the whole "
                      "file: outputs on disk get their records again from their files on the next run) and rerun")


def _is_record(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("output"), str) and record.get("status") in (OK, FAILED)


def _lines(path: Path) -> list[dict[str, Any]]:
    """The records of a manifest or part file. Only a part file's last line may be partial (its writer was
    killed); anything else that is not a record stops the run, naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise _foreign(path, "", f"byte {exc.start} (not UTF-8)") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines) and path.parent.name == PARTS_DIR:  # the partial last line of a killed writer
                log.info("%s: ignoring a partial record", path)
                continue
            record = None
        if not _is_record(record):
            raise _foreign(path, f" line {number}", repr(line if len(line) <= 80 else line[:80] + "..."))
        records.append(record)
    return records


def read_records(out: Path, outputs: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """The known records (of ``outputs`` only, if given) by output path: the manifest, then the parts; a
    success beats a failure."""
    sources = [out / MANIFEST_NAME] + sorted((out / PARTS_DIR).glob("*.jsonl"))
    records: dict[str, dict[str, Any]] = {}
    for source in sources:
        if not source.is_file():
            continue
        for record in _lines(source):
            if outputs is not None and record.get("output") not in outputs:
                continue
            known = records.get(record.get("output"))
            if known is None or known["status"] != OK or record["status"] == OK:
                records[record["output"]] = record
    return records


def merge_manifest(out: Path, outputs: set[str]) -> dict[str, int]:
    """Write ``manifest.jsonl`` from all records of planned outputs (sorted by output), then drop the parts.

    Returns the number of records per status. The file is replaced atomically and only when its
    content changes, so a rerun that had nothing to do leaves it untouched.
    """
    records = [r for o, r in sorted(read_records(out, outputs).items()) if r["status"] != OK or (out / o).is_file()]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    manifest = out / MANIFEST_NAME
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != text:
        atomic_write(manifest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    parts = out / PARTS_DIR
    if parts.is_dir():
        for part in parts.glob("*.jsonl"):
            part.unlink()
        parts.rmdir()
    counts = {OK: 0, FAILED: 0}
    for record in records:
        counts[record["status"]] += 1
    return counts


def _describe(value: Any) -> str:
    if isinstance(value, Exception):
        return f"{type(value).__name__}: {value}"
    text = json.dumps(value)
    return f"it holds {text if len(text) <= 60 else text[:60] + '...'}"


# settings added after the first release, with the value every run before them used
ABSENT_MEANS = {"style_boost": 0.0, "style_refine": 0}


def check_config(out: Path, config: dict[str, Any], write: bool) -> None:
    """Refuse to continue an output folder made with other settings (its files would silently mix)."""
    path = out / CONFIG_NAME
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            stored = exc
        if not isinstance(stored, dict):
            raise ValueError(f"{path} is not a settings file of stylize-dataset ({_describe(stored)}); use another "
                             "--out, or delete it if this folder holds one run's outputs (the next run records its "
                             "settings anew)")
        # keys a file of an older version lacks are not compared (it could not record them), unless what it used
        # then is known
        stored = {**{k: v for k, v in ABSENT_MEANS.items() if k in config}, **stored}
        changed = {key: (stored[key], value) for key, value in config.items() if key in stored and stored[key] != value}
        if changed:
            details = ", ".join(f"{key}: {old!r} then, {new!r} now" for key, (old, new) in changed.items())
            hint = " (a style image was added, removed, renamed or its pixels changed)" if STYLES_KEY in changed else ""
            raise ValueError(f"{out} was stylized with other settings ({details}){hint}; rerun with the same options "
                             "and files to complete it, or use another --out")
    elif write:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
