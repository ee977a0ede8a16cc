"""Everything read is a regular file, and every image reader is bounded the same way.

A named pipe called ``x.jpg`` blocks any reader that opens it; a tiny file can declare a huge picture or
thousands of frames. Each reader (dataset listing, trainer scan, runner LoadImage/LoadLatent) skips or
refuses the first, and both LoadImage decoders (PyAV, Pillow) refuse the second at one bound.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adain_nodes import image_files
from adain_nodes.cli import main
from adain_nodes.dataset.files import list_images
from adain_nodes.runner.core_nodes import decode_input_image, load_image_file
from adain_nodes.runner.pyav_decode import load_image_pyav, pyav_available
from training.data import scan_images

import preforked

REPO = Path(__file__).resolve().parents[1]

# Long enough for any of these reads on a loaded machine; a reader blocked on a pipe never returns.
READ_SECONDS = 30.0


@pytest.fixture
def tree_with_pipe(tmp_path) -> Path:
    """Two real images and a named pipe that looks like one; the pipe's writer end is opened at teardown so
    a reader the old code left blocked on it ends."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png"):
        Image.fromarray(np.full((80, 96, 3), 120, np.uint8)).save(root / name)
    os.mkfifo(root / "x.jpg")
    yield root
    try:
        os.close(os.open(root / "x.jpg", os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def _within(seconds: float, function, *args):
    result = {}

    def target() -> None:
        try:
            result["value"] = function(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(function, '__name__', function)} still blocks after {seconds:.0f} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_the_dataset_listing_skips_special_files(tree_with_pipe, caplog):
    assert _within(READ_SECONDS, list_images, tree_with_pipe) == ["a.jpg", "sub/b.png"]
    assert "x.jpg: not a regular file" in caplog.text


def test_the_trainer_scan_skips_special_files(tree_with_pipe):
    found = _within(READ_SECONDS, scan_images, tree_with_pipe, 16)
    assert [p.relative_to(tree_with_pipe).as_posix() for p in found] == ["a.jpg", "sub/b.png"]


def _workflow(tmp_path: Path, prompt: dict) -> Path:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(prompt))
    return path


LOAD_IMAGE = {"1": {"class_type": "LoadImage", "inputs": {"image": "NAME"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}}
LOAD_LATENT = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "NAME"}},
               "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "t"}}}


@pytest.mark.parametrize("prompt", [LOAD_IMAGE, LOAD_LATENT], ids=["LoadImage", "LoadLatent"])
@pytest.mark.parametrize("kind", ["pipe", "folder"])
@pytest.mark.parametrize("validate_only", [True, False])
def test_loaders_refuse_a_pipe_or_folder_in_validation(tmp_path, prompt, kind, validate_only):
    """In a forked process with a time limit: PyAV blocks on a pipe holding the GIL, which no thread escapes."""
    inputs = tmp_path / "input"
    inputs.mkdir()
    name = "x.png" if prompt is LOAD_IMAGE else "x.latent"
    os.mkfifo(inputs / name) if kind == "pipe" else (inputs / name).mkdir()
    workflow = _workflow(tmp_path, json.loads(json.dumps(prompt).replace("NAME", name)))
    args = ["run", str(workflow), "--input-dir", str(inputs), "--output-dir", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = preforked.run("adain_nodes", args + (["--validate-only"] if validate_only else []), env, REPO,
                           tmp_path / "logs", timeout=READ_SECONDS)
    out = result.stdout
    assert result.returncode == 1 and "failed validation" in out and "nothing was executed" in out
    assert ("a folder" if kind == "folder" else "not a regular file") in out


def test_save_latent_prefix_leaving_the_output_folder_fails_validation(tmp_path, capsys):
    inputs = tmp_path / "input"
    inputs.mkdir()
    from adain_nodes.runner.latent_nodes import save_latent_file

    import torch

    save_latent_file(torch.zeros(1, 4, 8, 8), [inputs / "x.latent"], None)
    prompt = json.loads(json.dumps(LOAD_LATENT).replace("NAME", "x.latent"))
    prompt["2"]["inputs"]["filename_prefix"] = "../../escaped"
    code = main(["run", str(_workflow(tmp_path, prompt)), "--input-dir", str(inputs), "--output-dir",
                 str(tmp_path / "out"), "--validate-only"])
    out = capsys.readouterr().out
    assert code == 1 and "outside the output folder" in out
    assert not list(tmp_path.glob("escaped*"))


@pytest.fixture
def small_bound(monkeypatch):
    """The decode bound lowered so a test can cross it with small files (the real one is 179 M pixels)."""
    monkeypatch.setattr(image_files, "MAX_DECODED_PIXELS", 1_000_000)
    monkeypatch.setattr(image_files, "MAX_DECODED_FRAMES", 10)


def _one_bit_png(path: Path, width: int, height: int) -> Path:
    Image.new("1", (width, height), 1).save(path)
    return path


def _gif(path: Path, frames: int) -> Path:
    images = [Image.new("RGB", (16, 16), (8 * i, 0, 0)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=10, loop=0)
    return path


DECODERS = {"pillow": load_image_file, "as LoadImage": decode_input_image}
if pyav_available():
    DECODERS["pyav"] = load_image_pyav


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("make", ["too many pixels", "too many frames"])
def test_one_bound_for_every_decoder(tmp_path, small_bound, decoder, make):
    path = (_one_bit_png(tmp_path / "wide.png", 2000, 1000) if make == "too many pixels"
            else _gif(tmp_path / "frames.gif", 30))
    with pytest.raises(Image.DecompressionBombError, match="decoding it would take more than"):
        DECODERS[decoder](path)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_within_the_bound_everything_decodes(tmp_path, small_bound, decoder):
    images, _ = DECODERS[decoder](_one_bit_png(tmp_path / "ok.png", 900, 1000))
    assert images.shape == (1, 1000, 900, 3)
    images, _ = DECODERS[decoder](_gif(tmp_path / "ok.gif", 10))
    assert images.shape[0] == 10


def test_load_image_of_a_bomb_is_one_line(tmp_path, capsys, small_bound):
    inputs = tmp_path / "input"
    inputs.mkdir()
    _one_bit_png(inputs / "wide.png", 2000, 1000)
    workflow = _workflow(tmp_path, json.loads(json.dumps(LOAD_IMAGE).replace("NAME", "wide.png")))
    code = main(["run", str(workflow), "--input-dir", str(inputs), "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1 and "DecompressionBombError" in out and "Traceback" not in out
