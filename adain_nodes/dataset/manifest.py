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


def _lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the partial last line of a killed writer
            log.info("%s: ignoring a partial record", path)
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


def check_config(out: Path, config: dict[str, Any], write: bool) -> None:
    """Refuse to continue an output folder made with other settings (its files would silently mix)."""
    path = out / CONFIG_NAME
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        changed = {key: (stored.get(key), value) for key, value in config.items() if stored.get(key) != value}
        if changed:
            details = ", ".join(f"{key}: {old!r} then, {new!r} now" for key, (old, new) in changed.items())
            raise ValueError(f"{out} was stylized with other settings ({details}); rerun with the same options to "
                             "complete it, or use another --out")
    elif write:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
