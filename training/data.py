"""Image folders and an infinite, resumable, rank-aware sample stream.

Every sample is named by its global position in the stream: the image indices come from a
seeded permutation per epoch and the crop from a generator seeded with (seed, position). So the
data do not depend on worker processes, resume points or how a global batch is split over DDP
ranks, which is what makes resume exact and multi-process runs equal to single-process ones.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from adain_nodes.core.pil_image import to_rgb8
from adain_nodes.file_walk import walk_files
from adain_nodes.image_files import IMAGE_ERRORS, IMAGE_SUFFIXES

log = logging.getLogger(__name__)

# Distinct seed streams for content order, style order and crops.
_CONTENT, _STYLE, _CROP = 1, 2, 3


def scan_images(folder: str | os.PathLike, min_size: int) -> list[Path]:
    """Image files under ``folder`` (nested, sorted; each real folder once), skipping unreadable or tiny ones
    with a warning.

    Only headers are read here; files that fail later while decoding are skipped at load time.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    found: list[Path] = []
    skipped = 0
    for path in walk_files(folder):
        if path.name.startswith(".") or not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            with Image.open(path) as img:
                width, height = img.size
        except IMAGE_ERRORS as exc:
            log.warning("skipping unreadable image %s (%s)", path, exc)
            skipped += 1
            continue
        if min(width, height) < min_size:
            log.warning("skipping tiny image %s (%dx%d < %d px)", path, width, height, min_size)
            skipped += 1
            continue
        found.append(path)
    if not found:
        raise ValueError(f"{folder}: no usable images ({', '.join(IMAGE_SUFFIXES)}) found"
                         + (f"; {skipped} skipped" if skipped else ""))
    log.info("%s: %d images%s", folder, len(found), f" ({skipped} skipped)" if skipped else "")
    return found


def check_decodable(files: list[Path], folder: str | os.PathLike) -> None:
    """Decode images of ``files`` until one decodes whole: a folder whose images all fail (their headers read,
    their data do not) is refused before training starts, instead of failing in a loader worker later."""
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
            return
        except IMAGE_ERRORS as exc:
            log.warning("skipping image that fails to decode: %s (%s)", path, exc)
    raise ValueError(f"{folder}: none of its {len(files)} images decodes (each is truncated or corrupt); "
                     "give a folder of readable images")


def _permutation(n: int, seed: int, stream: int, epoch: int) -> Tensor:
    state = np.random.SeedSequence([seed, stream, epoch]).generate_state(2, dtype=np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return torch.randperm(n, generator=g)


class _EpochOrder:
    """Index at a global position: a fresh seeded permutation every pass over ``n`` items."""

    def __init__(self, n: int, seed: int, stream: int) -> None:
        self.n, self.seed, self.stream = n, seed, stream
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, position: int) -> int:
        epoch = position // self.n
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, _permutation(self.n, self.seed, self.stream, epoch)
        return int(self._perm[position % self.n])


class PairSampler(Sampler):
    """Endless ``(global position, content index, style index)`` for one rank, from ``start`` on.

    Step ``t`` of rank ``r`` takes global positions ``t*B + r*b ... t*B + r*b + b-1`` (``B`` global,
    ``b`` local batch): the ranks' batches are slices of the one global batch.
    """

    def __init__(self, n_content: int, n_style: int, local_batch: int, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.content = _EpochOrder(n_content, seed, _CONTENT)
        self.style = _EpochOrder(n_style, seed, _STYLE)
        self.local_batch, self.rank, self.world_size = local_batch, rank, world_size
        self.seed, self.start_step = seed, start_step

    def state(self, step: int) -> dict[str, int]:
        """What a checkpoint needs to continue the stream at ``step``."""
        return {"seed": self.seed, "step": step, "global_batch": self.local_batch * self.world_size}

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        step = self.start_step
        global_batch = self.local_batch * self.world_size
        while True:
            first = step * global_batch + self.rank * self.local_batch
            for position in range(first, first + self.local_batch):
                yield position, self.content(position), self.style(position)
            step += 1


class PairDataset(Dataset):
    """Content and style crops for a sampler item; a file that fails to decode is replaced by the next one."""

    def __init__(self, content: list[Path], style: list[Path], crop: int, resize: int = 512,
                 resize_mode: str = "square", seed: int = 0, min_scale: float = 1.0,
                 max_scale: float = 1.0) -> None:
        self.content, self.style = content, style
        self.crop, self.resize, self.resize_mode, self.seed = crop, resize, resize_mode, seed
        self.min_scale, self.max_scale = min_scale, max_scale
        self._bad: set[Path] = set()

    def __len__(self) -> int:
        return max(len(self.content), len(self.style))

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
        position, ci, si = item
        rng = random.Random(f"{self.seed}:{_CROP}:{position}")
        return self._load(self.content, ci, rng), self._load(self.style, si, rng)

    def _load(self, files: list[Path], index: int, rng: random.Random) -> Tensor:
        for attempt in range(len(files)):
            path = files[(index + attempt) % len(files)]
            if path in self._bad:
                continue
            try:
                with Image.open(path) as img:
                    img = to_rgb8(ImageOps.exif_transpose(img))
            except IMAGE_ERRORS as exc:
                log.warning("skipping image that fails to decode: %s (%s)", path, exc)
                self._bad.add(path)
                continue
            return self._crop(img, rng)
        raise RuntimeError(f"none of the {len(files)} images could be decoded")

    def _crop(self, img: Image.Image, rng: random.Random) -> Tensor:
        """Resize as configured, zoom by a random factor in [min_scale, max_scale], never below the crop, then
        a random ``crop x crop`` window. Evaluation and the nodes see whole images at smaller scales than
        the crops of training; without the zoom out the decoder never learns them (relu2_1 texture overshoot).
        Zooming in shows it soft, upsampled detail, as a small image stylized at a larger size."""
        w, h = img.size
        if self.resize_mode == "square":
            size = (self.resize, self.resize)
        elif self.resize_mode == "short":
            scale = self.resize / min(w, h)
            size = (max(round(w * scale), 1), max(round(h * scale), 1))
        else:
            size = (w, h)
        if self.min_scale < 1.0 or self.max_scale > 1.0:  # no draw otherwise: such runs' crops stay as they were
            zoom = rng.uniform(self.min_scale, self.max_scale)
            size = (max(round(size[0] * zoom), 1), max(round(size[1] * zoom), 1))
        if min(size) < self.crop:
            scale = self.crop / min(size)
            size = (max(round(size[0] * scale), self.crop), max(round(size[1] * scale), self.crop))
        if size != (w, h):
            img = img.resize(size, Image.BILINEAR)
        left = rng.randint(0, size[0] - self.crop)
        top = rng.randint(0, size[1] - self.crop)
        img = img.crop((left, top, left + self.crop, top + self.crop))
        array = np.asarray(img, dtype=np.uint8).copy()
        return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
