"""The released AdaIN weights: fetched on request only, verified before use, converted to safetensors.

Why a fixed table: a URL never comes from a workflow. Loaders and the CLI can only ask for a *name*
listed here; the URL and the expected SHA-256 (and size, where published) are the pack's own. Nothing
is fetched at import time.

Transfer: ``NAME.part`` next to the destination, resumed with an HTTP Range request when a previous
attempt broke off (a server that answers 200 instead of 206 makes it start over cleanly); the file is
renamed to its final name only after its size and hash match. A wrong hash deletes the ``.part``, so a
corrupt prefix is never resumed.

``ADAIN_DOWNLOAD_BASE_URL`` (or the ``base_url`` argument) replaces the release URL, for tests and
mirrors only: the hashes still have to match. Workflows cannot set either.
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import AdaINInputError, WeightFileError
from .http_stream import POLL_SECONDS, RateWatch, Stream
from .host.paths import DEFAULT_ENCODER, MODELS_FOLDER, list_files, resolve_file, writable_path
from .models.weights import convert_to_safetensors, file_sha256

log = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
BASE_URL_ENV = "ADAIN_DOWNLOAD_BASE_URL"
PART_SUFFIX = ".part"
# A file of unknown size larger than this is refused: a misbehaving server cannot fill the disk.
MAX_UNKNOWN_SIZE = 512 << 20
REPORT_EVERY = 1 << 20

Progress = Callable[[int, "int | None"], None]
"""``progress(bytes_done, bytes_total_or_None)``, called at least every POLL_SECONDS while a transfer waits;
it may raise (an interrupt) to cancel, keeping the .part."""


class DownloadError(WeightFileError):
    """A known weight file could not be fetched or did not verify."""


@dataclass(frozen=True)
class ReleasedFile:
    """A file of the reference port's release, pinned by hash (and size where it is published)."""

    name: str
    sha256: str
    size: int | None
    kind: str


@dataclass(frozen=True)
class ConvertedFile:
    """A safetensors file the pack makes from a released file (``convert_to_safetensors``)."""

    name: str
    source: str
    kind: str


RELEASED: dict[str, ReleasedFile] = {f.name: f for f in (
    ReleasedFile("vgg_normalised.pth", "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
                 80_102_481, "encoder"),
    # No published size for decoder.pth: it is verified by its hash alone.
    ReleasedFile("decoder.pth", "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472", None, "decoder"),
)}
CONVERTED: dict[str, ConvertedFile] = {f.name: f for f in (
    ConvertedFile(DEFAULT_ENCODER, "vgg_normalised.pth", "encoder"),
    ConvertedFile("adain_reference_decoder.safetensors", "decoder.pth", "decoder"),
)}


def is_known(name: str) -> bool:
    return name in RELEASED or name in CONVERTED


def missing_known(kind: str) -> list[str]:
    """Safetensors names of ``kind`` ('encoder'/'decoder') the pack can fetch that no models folder has yet."""
    present = set(list_files(MODELS_FOLDER))
    return [f.name for f in CONVERTED.values() if f.kind == kind and f.name not in present]


def release_url(name: str, base_url: str | None = None) -> str:
    """URL of a released file: the release, or the test/mirror override."""
    if name not in RELEASED:
        raise AdaINInputError(f"{name!r} is not a released AdaIN weight file; known: {sorted(RELEASED)}")
    base = (base_url or os.environ.get(BASE_URL_ENV) or RELEASE_URL).rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise DownloadError(f"download base URL {base!r} must be http:// or https:// (check {BASE_URL_ENV})")
    return f"{base}/{urllib.parse.quote(name)}"


class _Truncated(Exception):
    """The connection ended before the whole file arrived; the .part is kept for a resumed attempt."""


def download(name: str, dest_dir: str | os.PathLike, *, base_url: str | None = None,
             progress: Progress | None = None, attempts: int = 3, timeout: float = 60.0) -> Path:
    """Fetch released file ``name`` to ``dest_dir/name``, resuming a kept ``.part``; verified before rename."""
    spec = RELEASED.get(name)
    if spec is None:
        raise AdaINInputError(f"{name!r} is not a released AdaIN weight file; known: {sorted(RELEASED)}")
    url = release_url(name, base_url)
    dest = Path(dest_dir) / name
    part = dest.with_name(dest.name + PART_SUFFIX)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, max(1, attempts) + 1):
        try:
            _transfer(url, part, spec, progress, timeout)
            break
        except _Truncated as exc:
            if attempt >= attempts:
                raise DownloadError(f"{url}: the transfer broke off ({exc}) after {attempts} attempt(s); "
                                    f"{part.stat().st_size if part.exists() else 0} bytes are kept in {part}, "
                                    "run the download again to resume") from None
            log.warning("%s: transfer broke off (%s); resuming (attempt %d of %d)", name, exc, attempt + 1, attempts)
    _verify(part, spec, url)
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)
    log.info("downloaded %s (sha256 verified)", dest)
    return dest


def _transfer(url: str, part: Path, spec: ReleasedFile, progress: Progress | None, timeout: float) -> None:
    """One HTTP request appending to ``part``; raises _Truncated when the body ends early."""
    offset = part.stat().st_size if part.exists() else 0
    limit = spec.size if spec.size is not None else MAX_UNKNOWN_SIZE
    if offset > limit:
        log.warning("%s is larger than %s can be; starting over", part, spec.name)
        part.unlink()
        offset = 0
    request = urllib.request.Request(url, headers={"User-Agent": f"adain-nodes/{__version__}",
                                                   "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    watch = _Watch(url, part, progress)
    with Stream(request, timeout) as stream:
        _receive(stream, watch, url, part, spec, offset, limit)


def _receive(stream: Stream, watch: "_Watch", url: str, part: Path, spec: ReleasedFile, offset: int,
             limit: int) -> None:
    """The response of one request: its status and announced size checked, its body appended to ``part``."""
    try:
        response = stream.response(watch)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and (spec.size is None or offset == spec.size):
            return  # the kept .part is already whole; the hash check decides
        if exc.code == 416:
            part.unlink(missing_ok=True)
            raise _Truncated(f"the server refused to resume at byte {offset}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}. "
                            + ("The file is not at this address; " if exc.code in (403, 404, 410) else
                               "The server failed; try again later, or ")
                            + f"download it by hand and put it in {part.parent}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason}). Check the network, or download the file by "
                            f"hand and put it in {part.parent}") from None
    start, total = _body_range(response, offset)
    if response.status == 206 and start != offset:
        part.unlink(missing_ok=True)
        raise _Truncated(f"the server resumed at byte {start} instead of {offset}")
    if response.status != 206 and offset:
        log.warning("%s: the server ignored the resume request (HTTP %d); starting over", spec.name,
                    response.status)
        offset = 0
    wrong_size = total is not None and (total > limit or (spec.size is not None and total != spec.size))
    if wrong_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the server announces {total} bytes but {spec.name} has "
                            f"{spec.size if spec.size is not None else f'at most {limit}'}; it serves a "
                            f"different file")
    done = offset
    watch.start(done, total)
    with open(part, "r+b" if offset else "wb") as out:
        out.seek(offset)
        out.truncate()
        try:
            for block in stream.blocks(watch):
                out.write(block)
                done += len(block)
                if done > limit:
                    out.close()
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"{url}: the server sent more than the {limit} bytes {spec.name} "
                                        "can have; it serves a different file")
                watch.received(done)
        except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as exc:
            raise _Truncated(f"{type(exc).__name__} at byte {done}") from None
    if total is not None and done < total:
        raise _Truncated(f"got {done} of {total} bytes")
    if watch.reported != done:
        watch.report()


class _Watch(RateWatch):
    """The transfer's clock (``http_stream``: a transfer slower than MIN_RATE over any RATE_WINDOW stops, with
    the .part kept for a resumed attempt), reporting progress every POLL_SECONDS even when no byte comes, so
    the host's interrupt is honoured."""

    def __init__(self, url: str, part: Path, progress: Progress | None) -> None:
        super().__init__(f"{url}: the server")
        self.url, self.part, self.progress = url, part, progress
        self.total = None
        self.reported_at, self.reported = self.window_start, -REPORT_EVERY

    def start(self, done: int, total: int | None = None) -> None:
        super().start(done)
        self.total = total

    def received(self, done: int) -> None:
        super().received(done)
        if (done - self.reported >= REPORT_EVERY or done == self.total
                or time.monotonic() - self.reported_at >= POLL_SECONDS):
            self.report()

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)
        self.reported_at, self.reported = time.monotonic(), self.done

    def too_slow(self, rate: float, elapsed: float) -> Exception:
        return DownloadError(f"{super().too_slow(rate, elapsed)}. {self.done} bytes are kept in {self.part}: run the "
                             f"download again to resume, or download the file by hand and put it in {self.part.parent}")

    def idle(self) -> None:
        """No byte within POLL_SECONDS: enforce the rate and let the host interrupt."""
        super().idle()
        self.report()


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _body_range(response, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None when not announced)."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
        if match:
            start, total = int(match.group(1)), match.group(3)
            return start, int(total) if total != "*" else (start + length if length is not None else None)
        return -1, None  # a partial body we cannot place: start over
    return 0, length


def _verify(path: Path, spec: ReleasedFile, url: str) -> None:
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        path.unlink()
        raise DownloadError(f"{url}: got {size} bytes, {spec.name} has {spec.size}; the download was discarded, "
                            "try again")
    digest = file_sha256(path)
    if digest != spec.sha256:
        path.unlink()
        raise DownloadError(f"{url}: sha256 {digest} does not match the released {spec.name} ({spec.sha256}); "
                            "the download is corrupt or the server serves a different file. It was discarded; "
                            f"try again (and check {BASE_URL_ENV} if you set it)")


def _local(name: str, dest_dir: Path | None) -> Path | None:
    if dest_dir is not None:
        return dest_dir / name if (dest_dir / name).is_file() else None
    try:
        return resolve_file(MODELS_FOLDER, name)
    except AdaINInputError:
        return None


def ensure_file(name: str, dest_dir: str | os.PathLike | None = None, *, base_url: str | None = None,
                progress: Progress | None = None, keep_source: bool = False, attempts: int = 3) -> Path:
    """Path of known file ``name``, fetched (and converted) first if absent.

    Looks in ``dest_dir`` or, by default, every models folder, and writes to ``dest_dir`` or the
    first models folder. For a converted file, a local released source is used when its hash
    matches; a source fetched only for the conversion is deleted afterwards unless ``keep_source``.
    """
    if not is_known(name):
        raise AdaINInputError(f"{name!r} is not a file the pack can download; known: "
                              f"{sorted(CONVERTED) + sorted(RELEASED)}")
    dest_dir = Path(dest_dir) if dest_dir is not None else None
    found = _local(name, dest_dir)
    if found is not None:
        return found
    target_dir = dest_dir if dest_dir is not None else writable_path(MODELS_FOLDER, name).parent
    if name in RELEASED:
        return download(name, target_dir, base_url=base_url, progress=progress, attempts=attempts)
    converted = CONVERTED[name]
    source = _local(converted.source, dest_dir)
    fetched = source is None
    if source is not None:
        digest = file_sha256(source)
        if digest != RELEASED[converted.source].sha256:
            raise DownloadError(f"{source} is not the released {converted.source} (sha256 {digest}); to make "
                                f"{name} from the release, move that file away, or convert your own file with "
                                f"'python -m adain_nodes convert {source.name} OTHER_NAME.safetensors'")
    else:
        source = download(converted.source, target_dir, base_url=base_url, progress=progress, attempts=attempts)
    target = target_dir / name
    convert_to_safetensors(source, target, converted.kind)
    if fetched and not keep_source:
        source.unlink()
    log.info("made %s from %s", target, converted.source)
    return target


def text_progress(name: str, stream=None) -> Progress:
    """A one-line progress display for terminals (the CLI); ComfyUI uses its own progress bar instead."""
    stream = stream if stream is not None else sys.stderr

    def report(done: int, total: int | None) -> None:
        if total:
            line = f"\r{name}: {done / 1e6:6.1f} of {total / 1e6:.1f} MB ({100 * done // total:3d}%)"
        else:
            line = f"\r{name}: {done / 1e6:6.1f} MB"
        stream.write(line + ("\n" if total and done >= total else ""))
        stream.flush()

    return report


__all__ = ["RELEASED", "CONVERTED", "BASE_URL_ENV", "DownloadError", "download", "ensure_file", "is_known",
           "missing_known", "release_url", "text_progress"]
