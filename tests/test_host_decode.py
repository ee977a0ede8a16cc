"""Headless LoadImage gives ComfyUI's pixels: decodes checked against ones recorded from ComfyUI 0.33 itself.

``tests/host_decode/decodes.json`` holds checksums of what ComfyUI's ``nodes.LoadImage`` returned for the
example inputs and for synthetic images covering every decode path (re-record with
``tests/host_decode/record.py``, see its docstring).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from adain_nodes.runner import pyav_decode
from adain_nodes.runner.core_nodes import decode_input_image, load_image_file
from host_decode.record import EXAMPLE_INPUTS, IMAGE_FILE_SUFFIXES, IMAGES, RECORD, REPO, fingerprint

RECORDED = json.loads(RECORD.read_text())
DECODES = RECORDED["decodes"]
needs_pyav = pytest.mark.skipif(not pyav_decode.pyav_available(),
                                reason="PyAV (package 'av') is not installed: ComfyUI's decode cannot be reproduced "
                                       "(pip install -r requirements-test.txt)")


def _fingerprint(decoded) -> dict:
    image, mask = decoded
    return fingerprint(image.numpy(), mask.numpy())


def test_every_test_image_is_recorded():
    files = [p for folder in (EXAMPLE_INPUTS, IMAGES) for p in folder.iterdir() if p.suffix in IMAGE_FILE_SUFFIXES]
    assert sorted(p.relative_to(REPO).as_posix() for p in files) == sorted(DECODES)


@needs_pyav
@pytest.mark.parametrize("name", sorted(DECODES))
def test_decode_equals_comfyuis(name):
    got = _fingerprint(decode_input_image(REPO / name))
    assert got == DECODES[name], (f"{name}: decoded differently from ComfyUI {RECORDED['comfyui']} with PyAV "
                                  f"{RECORDED['pyav']} (here PyAV {pyav_decode.av.__version__})")


@needs_pyav
def test_pillow_alone_would_not_match_the_host():
    """The check above can fail: Pillow's JPEG decode is not ComfyUI's."""
    name = "examples/input/chelsea.jpg"
    assert _fingerprint(load_image_file(REPO / name))["image_sha256"] != DECODES[name]["image_sha256"]


def test_without_pyav_pillow_decodes_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(pyav_decode, "av", None)
    pyav_decode.announce_decoder.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger=pyav_decode.__name__):
            for name in ("chelsea.jpg", "chelsea_mask_cat.png"):
                image, mask = decode_input_image(EXAMPLE_INPUTS / name)
                pillow_image, pillow_mask = load_image_file(EXAMPLE_INPUTS / name)
                assert image.equal(pillow_image) and mask.equal(pillow_mask)
    finally:
        pyav_decode.announce_decoder.cache_clear()
    said = [r for r in caplog.records if "Pillow" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING


def test_animated_webp_falls_back_to_pillow_with_every_frame(tmp_path: Path):
    """PyAV yields no frame for animated WebP; ComfyUI then reads it with Pillow, and so does the runner."""
    image, _ = decode_input_image(EXAMPLE_INPUTS / "coffee_frames.webp")
    pillow_image, _ = load_image_file(EXAMPLE_INPUTS / "coffee_frames.webp")
    assert image.shape[0] > 1 and image.equal(pillow_image)
