"""Stylize a dataset: each content image with ``styles_per_image`` style images, on this rank's share.

The steps of a rank: plan every output (the same plan in every process), take its share, skip what
exists, compute the statistics of the styles it still needs once each, then encode each content
image once, blend it with its styles and decode them as one batch. Images are decoded in
DataLoader workers while the device computes; outputs are encoded and written atomically by a
writer thread. Large images go through the pipeline's tiled path and batches halve on
out-of-memory, so no image is ever skipped for memory.

On a CPU each image is computed by one thread, and a rank's cores work on different images: oneDNN's
results depend on the number of threads in the last bits (a pixel's rounding flips), so this is what
makes one process give the same files as any number of torchrun processes. On a GPU cuDNN is kept
deterministic for the same reason.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .. import pipeline
from ..host.paths import DEFAULT_DECODER, DEFAULT_ENCODER, MODELS_FOLDER, resolve_file
from ..host.runtime import StandaloneRuntime
from ..models.loaded import LoadedModel
from ..models.precision import resolve_precision
from ..atomic_files import atomic_write, remove_stale_temporaries
from ..models.weights import load_decoder, load_encoder
from ..image_files import IMAGE_ERRORS
from .files import DATASET_SUFFIXES, encode_image, list_images, load_rgb
from .manifest import (FAILED, OK, STYLES_KEY, PartWriter, check_config, failed_record, merge_manifest, ok_record,
                       read_records, record_from_file)
from .plan import Job, name_problem, output_problem, plan_jobs, shard, shown
from .progress import Progress
from .ranks import Rank, cpu_threads, join, leave, rank_device

log = logging.getLogger(__name__)

# Outputs waiting for the writer thread; bounds the memory held by decoded images.
MAX_PENDING_WRITES = 8
# Write errors that concern one output's path (recorded as its failure); any other (a full disk, a file size
# limit, no permission) stops the run, which a rerun continues.
PER_FILE_ERRORS = (errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY, errno.EILSEQ)
T, R = TypeVar("T"), TypeVar("R")


@dataclass(frozen=True)
class Settings:
    """The command's options; the defaults follow bethgelab/stylize-datasets (content size kept, style
    short side 512, one style per image, alpha 1)."""

    content: Path
    style: Path
    out: Path
    styles_per_image: int = 1
    alpha: float = 1.0
    content_size: int = 0
    style_size: int = 512
    seed: int = 0
    encoder: str = DEFAULT_ENCODER
    decoder: str = DEFAULT_DECODER
    precision: str = "auto"
    workers: int = 2
    threads: int = 0
    retry_failed: bool = False
    style_boost: float = 0.0
    style_refine: int = 0


class ImageFiles(Dataset):
    """``(name, uint8 [3, H, W])`` per file, or ``(name, reason)`` for a file that does not decode."""

    def __init__(self, root: Path, names: list[str], short_side: int) -> None:
        self.root, self.names, self.short_side = root, names, short_side

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[str, Tensor | str]:
        name = self.names[index]
        try:
            return name, load_rgb(self.root / name, self.short_side)
        except IMAGE_ERRORS as exc:
            return name, f"{type(exc).__name__}: {exc}"


def _model_path(name: str) -> Path:
    """A path as given, or a file name in the ``adain`` models folder (``ADAIN_MODELS_DIR``, weights/)."""
    path = Path(name).expanduser()
    return path if path.is_file() else resolve_file(MODELS_FOLDER, name)


def _load_models(settings: Settings) -> tuple[pipeline.Encoder, pipeline.Decoder]:
    resolve_precision(settings.precision, torch.device("cpu"))  # validates the name
    encoder = load_encoder(_model_path(settings.encoder))
    decoder = load_decoder(_model_path(settings.decoder))
    for model in (encoder, decoder):
        model.precision = settings.precision
        # the layout the pipeline computes in, set once here: converting while another thread computes
        # would swap a weight's storage under a running convolution
        model.network.to(memory_format=torch.channels_last)
    return encoder, decoder


def _style_files_identity(root: Path, styles: list[str]) -> str:
    """A hash of every style file's name and content: replacing a style's pixels under the same name would
    otherwise mix two styles in one dataset (as the encoder's and decoder's identities cover their weights)."""
    digest = hashlib.sha256()
    for name in styles:
        try:
            with open(root / name, "rb") as f:
                content = hashlib.file_digest(f, "sha256").digest()
        except OSError as exc:  # recorded as a failure of its outputs when it is loaded
            content = f"unreadable: {exc.strerror}".encode()
        digest.update(name.encode() + b"\0" + content)
    return digest.hexdigest()


def _run_config(settings: Settings, styles: list[str], encoder: pipeline.Encoder,
                decoder: pipeline.Decoder) -> dict[str, Any]:
    """Everything an output depends on; a rerun into the same folder must match it."""
    return {"alpha": settings.alpha, "style_boost": settings.style_boost, "style_refine": settings.style_refine,
            "seed": settings.seed,
            "styles_per_image": settings.styles_per_image,
            "content_size": settings.content_size, "style_size": settings.style_size,
            "precision": settings.precision, "encoder": encoder.identity, "decoder": decoder.identity,
            "styles": hashlib.sha256("\n".join(styles).encode()).hexdigest(),
            STYLES_KEY: _style_files_identity(settings.style, styles)}


def _inside(path: Path, folder: Path) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def check_folders(settings: Settings) -> None:
    """Refuse an --out that is a file, or that overlaps --content or --style: a run would stylize its own
    outputs (and every rerun those of the last)."""
    if settings.out.exists() and not settings.out.is_dir():
        raise ValueError(f"--out {settings.out} exists and is not a folder; give a folder")
    for option, folder in (("--content", settings.content), ("--style", settings.style)):
        if _inside(settings.out, folder) or _inside(folder, settings.out):
            raise ValueError(f"--out {settings.out} overlaps {option} {folder}: the run would read its own outputs; "
                             "put the outputs in a folder outside both")


def _usable(names: list[str], what: str) -> tuple[list[str], dict[str, str]]:
    """``names`` in order, those that cannot be planned with (not UTF-8) in a printable form, and the reason
    for each of those."""
    planned, unusable = [], {}
    for name in names:
        problem = name_problem(name)
        planned.append(name if problem is None else shown(name))
        if problem is not None:
            unusable[planned[-1]] = f"{what} {problem}"
    return planned, unusable


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    for candidate in (folder, *folder.absolute().parents):
        if candidate.is_dir():
            try:
                return os.pathconf(candidate, "PC_NAME_MAX")
            except (OSError, ValueError, AttributeError):
                break
    return 255


def ordered_map(fn: Callable[[T], R], items: Iterable[T], parallel: int) -> Iterator[R]:
    """``map(fn, items)`` on ``parallel`` threads, in order, with at most ``2 * parallel`` items in flight."""
    if parallel <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="adain-compute") as pool:
        running: deque[Future] = deque()
        for item in items:
            running.append(pool.submit(fn, item))
            if len(running) >= 2 * parallel:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


class DatasetRuntime(StandaloneRuntime):
    """The standalone runtime with cuDNN's autotuner off: it may pick other kernels in another process."""

    def load(self, model: LoadedModel, working_bytes: int) -> None:
        model.network.to(self.device)


def _remove_temporaries(out: Path) -> None:
    """Delete what writes of a killed run left behind: only the pack's own write folders whose writer is gone
    (its lock says so), never a final name (those are whole files) nor anyone else's temporary files."""
    for root, _, _ in os.walk(out):
        remove_stale_temporaries(root)


class Stylizer:
    """One rank's work: its pending outputs, the style statistics they need, the outputs themselves."""

    def __init__(self, settings: Settings, rank: Rank, encoder: pipeline.Encoder, decoder: pipeline.Decoder,
                 runtime: StandaloneRuntime, parallel: int, unusable: dict[str, str] | None = None) -> None:
        self.s, self.rank, self.parallel = settings, rank, parallel
        self.unusable = unusable or {}  # content name -> why it cannot be stylized
        self.name_max = _name_max(settings.out)
        self.encoder, self.decoder, self.runtime = encoder, decoder, runtime
        self.records = PartWriter(settings.out, rank.rank)
        self.counts = {"written": 0, "failed": 0, "recovered": 0, "present": 0, "failed_before": 0}
        self.label = f"rank {rank.rank}/{rank.world_size}"

    def pending(self, share: list[list[Job]]) -> list[list[Job]]:
        """The jobs whose output is missing and not recorded as failed (unless retried); an output a killed run
        wrote but did not record gets its record."""
        wanted = {job.output for jobs in share for job in jobs}
        known = read_records(self.s.out, wanted)
        todo = []
        for jobs in share:
            missing = []
            for job in jobs:
                status = known.get(job.output, {}).get("status")
                problem = self.unusable.get(job.content) or output_problem(self.s.out, job.output, self.name_max)
                if problem is not None:  # recorded as failed without being tried: it cannot be written
                    if status == FAILED and not self.s.retry_failed:
                        self.counts["failed_before"] += 1
                    else:
                        self._fail(job, problem)
                    continue
                path = self.s.out / job.output
                if not path.is_file():
                    if status == FAILED and not self.s.retry_failed:
                        self.counts["failed_before"] += 1
                    else:
                        missing.append(job)
                    continue
                if status == OK:
                    self.counts["present"] += 1
                    continue
                try:
                    self.records.write(record_from_file(job, self.s.alpha, self.s.seed, path))
                    self.counts["recovered"] += 1
                except IMAGE_ERRORS as exc:
                    log.warning("%s is not a readable image (%s); making it again", path, exc)
                    missing.append(job)
            if missing:
                todo.append(missing)
        return todo

    def _loader(self, root: Path, names: list[str], short_side: int) -> DataLoader:
        return DataLoader(ImageFiles(root, names, short_side), batch_size=None, num_workers=self.s.workers,
                          prefetch_factor=4 if self.s.workers else None)

    def style_statistics(self, todo: list[list[Job]]) -> tuple[dict[str, pipeline.AdaINStyle], dict[str, str]]:
        """Mean and std of every style image the pending jobs use, each computed once; or why it failed."""
        names = sorted({job.style for jobs in todo for job in jobs})
        stats: dict[str, pipeline.AdaINStyle] = {}
        errors: dict[str, str] = {}
        progress = Progress(len(names), "styles", self.label)

        def compute(item: tuple[str, Tensor | str]) -> tuple[str, pipeline.AdaINStyle | str]:
            name, image = item
            if isinstance(image, str):
                return name, image
            return name, pipeline.style_statistics(self.encoder, image[None].float().div_(255.0), self.runtime)

        for name, result in ordered_map(compute, self._loader(self.s.style, names, self.s.style_size), self.parallel):
            if isinstance(result, str):
                log.warning("style image %s cannot be read: %s", name, result)
                errors[name] = f"style image unreadable: {result}"
            else:
                stats[name] = result
            progress.update()
        return stats, errors

    def stylize_one(self, image: Tensor, styles: list[pipeline.AdaINStyle]) -> Tensor:
        """The content image ``uint8 [3, H, W]`` with each style: ``[K, 3, H, W]`` in 0..1, one decoder batch
        (two with --style-boost, as AdaIN Style Transfer's style_boost: the first at alpha 1 measures the shortfall;
        --style-refine first takes its gradient steps for each pair, as AdaIN Style Transfer's style_refine)."""
        content = image[None].float().div_(255.0)
        features = pipeline.encode(self.encoder, content, self.runtime,
                                   levels=self.decoder.network.levels).expand(len(styles))
        stacked = pipeline.stack_styles(styles)
        if self.s.style_boost > 0:
            stacked = pipeline.boosted_style_for(self.encoder, self.decoder, features, stacked, self.s.style_boost,
                                                 self.runtime)
        if self.s.style_refine > 0:
            stacked = pipeline.refined_style(self.encoder, self.decoder, content.expand(len(styles), -1, -1, -1),
                                             stacked, self.s.style_refine, self.runtime)
        styled = pipeline.blend(features, stacked, self.s.alpha)
        return pipeline.decode(self.decoder, styled.without_content(), self.runtime)

    def _save(self, job: Job, image: Tensor) -> None:
        data = encode_image(image, Path(job.output).suffix)
        try:
            atomic_write(self.s.out / job.output, lambda tmp: Path(tmp).write_bytes(data))
        except OSError as exc:
            if exc.errno not in PER_FILE_ERRORS:  # the disk, not the file: stop, a rerun continues
                raise OSError(exc.errno, f"cannot write {self.s.out / job.output} ({exc.strerror or exc}); nothing "
                                         "is half-written: fix that and rerun to continue") from None
            self._fail(job, f"cannot write the output: {exc.strerror or exc}")
            return
        self.records.write(ok_record(job, self.s.alpha, self.s.seed, (image.shape[-1], image.shape[-2]), data))
        self.counts["written"] += 1

    def _fail(self, job: Job, reason: str) -> None:
        self.records.write(failed_record(job, self.s.alpha, self.s.seed, reason))
        self.counts["failed"] += 1

    def _compute(self, item: tuple[tuple[str, Tensor | str], list[Job]], stats: dict[str, pipeline.AdaINStyle],
                 style_errors: dict[str, str]) -> tuple[list[tuple[Job, Tensor]], list[tuple[Job, str]]]:
        """The outputs of one content image, and the jobs that failed with their reasons."""
        (name, image), jobs = item
        if isinstance(image, str):
            log.warning("content image %s cannot be read: %s", name, image)
            return [], [(job, f"content image unreadable: {image}") for job in jobs]
        failures = [(job, style_errors[job.style]) for job in jobs if job.style in style_errors]
        ready = [job for job in jobs if job.style in stats]
        outputs = self.stylize_one(image, [stats[job.style] for job in ready]).cpu() if ready else []
        return list(zip(ready, outputs)), failures

    def run(self, todo: list[list[Job]], stats: dict[str, pipeline.AdaINStyle], style_errors: dict[str, str]) -> None:
        progress = Progress(sum(len(jobs) for jobs in todo), "images", self.label)
        writes: deque[Future] = deque()
        loader = self._loader(self.s.content, [jobs[0].content for jobs in todo], self.s.content_size)
        # One writer thread: it alone appends records, and encoding/writing overlaps the next image's compute.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adain-writer") as writer:
            compute = lambda item: self._compute(item, stats, style_errors)  # noqa: E731
            for outputs, failures in ordered_map(compute, zip(loader, todo), self.parallel):
                writes.extend(writer.submit(self._fail, job, reason) for job, reason in failures)
                writes.extend(writer.submit(self._save, job, image) for job, image in outputs)
                while len(writes) > MAX_PENDING_WRITES:
                    writes.popleft().result()
                progress.update(len(outputs) + len(failures))
            for future in writes:
                future.result()
        self.records.close()


def stylize_dataset(settings: Settings) -> dict[str, int]:
    """Run this process's share; the main process then merges the manifest. Returns counts of outputs."""
    rank = join()
    try:
        device, cores = rank_device(rank), cpu_threads(rank, settings.threads)
        on_cpu = device.type == "cpu"
        torch.set_num_threads(1 if on_cpu else cores)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        runtime = DatasetRuntime(device)
        check_folders(settings)
        encoder, decoder = _load_models(settings)
        contents, unusable = _usable(list_images(settings.content), "content")
        styles, skipped_styles = _usable(list_images(settings.style), "style")
        for name, problem in skipped_styles.items():
            log.warning("style image %s skipped: %s", name, problem)
        styles = [name for name in styles if name not in skipped_styles]
        if not contents or not styles:
            raise ValueError(f"no usable images ({', '.join(DATASET_SUFFIXES)}) in "
                             f"{settings.content if not contents else settings.style}")
        plan = plan_jobs(contents, styles, settings.styles_per_image, settings.seed)
        check_config(settings.out, _run_config(settings, styles, encoder, decoder), write=rank.main)
        if rank.main:
            _remove_temporaries(settings.out)
        rank.barrier()  # nobody writes before the leftovers of a killed run are gone
        stylizer = Stylizer(settings, rank, encoder, decoder, runtime, cores if on_cpu else 1, unusable)
        todo = stylizer.pending(shard(plan, rank.rank, rank.world_size))
        log.info("%s on %s: %d content images, %d styles; %d outputs to make", stylizer.label,
                 runtime.compute_device(), len(contents), len(styles), sum(len(jobs) for jobs in todo))
        if todo:
            stats, style_errors = stylizer.style_statistics(todo)
            stylizer.run(todo, stats, style_errors)
        stylizer.records.close()
        rank.barrier()  # every rank's records are complete
        counts = dict(stylizer.counts)
        if rank.main:
            manifest = merge_manifest(settings.out, {job.output for jobs in plan for job in jobs})
            counts.update({"manifest_" + key: value for key, value in manifest.items()})
        return counts
    finally:
        leave()
