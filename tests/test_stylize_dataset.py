"""stylize-dataset: plan, outputs against the pipeline, manifest, torchrun equality, kill and resume."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adain_nodes import pipeline
from adain_nodes.dataset.manifest import MANIFEST_NAME, PARTS_DIR
from adain_nodes.dataset.plan import choose_styles, output_name, plan_jobs, shard
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.weights import load_decoder, load_encoder
from conftest import random_image
import preforked
from adain_nodes.host.paths import DEFAULT_DECODER
from conftest import ENCODER_FILE, write_random_models

REPO = Path(__file__).resolve().parents[1]
CONTENT_SIZES = {"cats/a.png": (40, 56), "cats/b.png": (48, 48), "dogs/c.png": (64, 40), "dogs/d.jpg": (36, 52),
                 "e.png": (30, 24)}


def _save(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Content in class folders (PNG outputs are lossless, JPEG ones too are compared bytewise), one file
    that is not an image, three styles, random-weight models."""
    root = tmp_path_factory.mktemp("dataset")
    for i, (name, (h, w)) in enumerate(CONTENT_SIZES.items()):
        _save(random_image(1, h, w, seed=i), root / "content" / name)
    (root / "content" / "dogs" / "broken.png").write_bytes(b"not an image")
    for i, name in enumerate(("waves.png", "dots.jpg", "more/mosaic.png")):
        _save(random_image(1, 32 + 8 * i, 40, seed=20 + i), root / "style" / name)
    write_random_models(root / "models", released_pth=False)
    return root


def _env(dataset: Path) -> dict[str, str]:
    return {**os.environ, "ADAIN_MODELS_DIR": str(dataset / "models"), "ADAIN_DEVICE": "cpu",
            "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["stylize-dataset", "--content", str(dataset / "content"), "--style", str(dataset / "style"),
            "--out", str(out), "--styles-per-image", "2", "--style-size", "0", "--workers", "1", "--seed", "7",
            *extra]


def _run(dataset: Path, out: Path, *extra: str, torchrun: int = 0, expect: int = 0) -> subprocess.CompletedProcess:
    """``python -m adain_nodes stylize-dataset``: under torchrun, or forked from the preloaded server."""
    if torchrun:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun),
                    "-m", "adain_nodes"]
        result = subprocess.run(launcher + _args(dataset, out, *extra), env=_env(dataset), capture_output=True,
                                text=True, timeout=300)
    else:
        result = preforked.run("adain_nodes", _args(dataset, out, *extra), _env(dataset), REPO,
                               out.parent / "logs")
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def _files(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    """Inode and modification time of every file and folder: any rewrite or replacement changes them."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in [out, *out.rglob("*")]}


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    """One process, run once for the module."""
    out = tmp_path_factory.mktemp("reference") / "out"
    _run(dataset, out)
    return out


def test_style_choice_depends_only_on_seed_and_path():
    styles = [f"s{i}.jpg" for i in range(50)]
    contents = [f"class{i % 3}/img{i}.jpg" for i in range(40)]
    plan = plan_jobs(contents, styles, 3, seed=5)
    shuffled = plan_jobs(contents[::-1], styles, 3, seed=5)[::-1]
    assert plan == shuffled  # order of work does not matter
    for jobs in plan:
        assert len({job.style for job in jobs}) == 3  # distinct styles per image
    assert choose_styles("a/b.jpg", 50, 3, 5) == choose_styles("a/b.jpg", 50, 3, 5)
    assert [choose_styles(c, 50, 3, 5) for c in contents] != [choose_styles(c, 50, 3, 6) for c in contents]
    # the python code in a fresh interpreter (another hash salt) draws the same
    code = "from adain_nodes.dataset.plan import choose_styles; print(choose_styles('a/b.jpg', 50, 3, 5))"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                           "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"}, check=True)
    assert fresh.stdout.strip() == str(choose_styles("a/b.jpg", 50, 3, 5))
    for world in (1, 2, 3, 8):
        shares = [shard(plan, r, world) for r in range(world)]
        assert sorted(j.output for s in shares for jobs in s for j in jobs) == sorted(
            j.output for jobs in plan for j in jobs)
    with pytest.raises(ValueError, match="styles-per-image"):
        plan_jobs(contents, styles[:2], 3, seed=5)


def test_output_names_say_the_style_and_keep_the_folders():
    assert output_name("n01/x_1.JPEG", "wikiart/monet.jpg") == "n01/x_1-stylized-wikiart_monet.JPEG"
    assert output_name("x.png", "waves.jpg") == "x-stylized-waves.png"


def test_outputs_manifest_and_failures(dataset, reference):
    records = [json.loads(line) for line in (reference / MANIFEST_NAME).read_text().splitlines()]
    contents = sorted(CONTENT_SIZES) + ["dogs/broken.png"]
    assert len(records) == 2 * len(contents)  # a line per output, failures included
    assert [r["output"] for r in records] == sorted(r["output"] for r in records)
    files = _files(reference)
    encoder = load_encoder(dataset / "models" / ENCODER_FILE)
    decoder = load_decoder(dataset / "models" / DEFAULT_DECODER)  # the default: a skip decoder
    encoder.precision = decoder.precision = "auto"

    def to_tensor(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]

    for record in records:
        assert record["seed"] == 7 and record["alpha"] == 1.0
        content = record["content"]
        assert record["output"] == output_name(content, record["style"])
        if content == "dogs/broken.png":
            assert record["status"] == "failed" and "unreadable" in record["error"]
            assert record["output"] not in files
            continue
        assert record["status"] == "ok"
        out = reference / record["output"]
        assert files[record["output"]] == record["sha256"] and out.stat().st_size == record["bytes"]
        h, w = CONTENT_SIZES[content]
        assert (record["width"], record["height"]) == (w, h) == Image.open(out).size
        if out.suffix == ".png":  # lossless: equal to the pipeline's one-pair transfer up to rounding
            expected = pipeline.stylize(encoder, decoder, to_tensor(dataset / "content" / content),
                                        to_tensor(dataset / "style" / record["style"]), StandaloneRuntime())
            assert (to_tensor(out) - expected).abs().max() <= 1.01 / 255
    styles_per_content = {}
    for record in records:
        styles_per_content.setdefault(record["content"], set()).add(record["style"])
    assert all(len(s) == 2 for s in styles_per_content.values())
    assert not (reference / PARTS_DIR).exists()


def test_torchrun_two_processes_give_the_same_files(dataset, reference, tmp_path):
    out = tmp_path / "out"
    _run(dataset, out, torchrun=2)
    assert _files(out) == _files(reference)  # every output and the manifest, byte for byte


def test_rerun_rewrites_nothing(dataset, reference):
    before = _stats(reference)
    result = _run(dataset, reference)
    assert "written=0" in result.stdout and "failed_before=2" in result.stdout
    assert _stats(reference) == before


@pytest.fixture(scope="module")
def many(dataset, tmp_path_factory) -> Path:
    """24 larger content images, so a run lasts long enough to be killed in the middle; same styles and models."""
    root = tmp_path_factory.mktemp("many")
    for i in range(24):
        _save(random_image(1, 96, 80, seed=100 + i), root / "content" / f"class{i % 3}" / f"img{i:02d}.png")
    (root / "style").symlink_to(dataset / "style")
    (root / "models").symlink_to(dataset / "models")
    return root


def _final_output_exists(out: Path) -> bool:
    """Whether a stylized image has its final name (not a temporary); os.walk, unlike rglob, skips the
    write folders that vanish while it looks."""
    return any(not name.startswith(".") and "-stylized-" in name for _, _, names in os.walk(out) for name in names)


def test_kill_at_any_moment_then_rerun_does_only_the_rest(many, tmp_path):
    _run(many, tmp_path / "uninterrupted")
    expected = _files(tmp_path / "uninterrupted")
    out = tmp_path / "out"
    process = preforked.Run("adain_nodes", _args(many, out, "--workers", "0"), _env(many), REPO, tmp_path / "logs")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _final_output_exists(out):
        time.sleep(0.002)
    process.kill()
    process.wait()
    # what a kill inside a write leaves: its write folder (lock and half a file) beside the outputs, a partial
    # record in a part file
    leftover = out / "class0" / ".img00-stylized-waves.png.0badf00d.tmp"
    leftover.mkdir(parents=True, exist_ok=True)
    (leftover / ".lock").write_bytes(b"")
    (leftover / "content.tmp").write_bytes(b"half")
    (out / PARTS_DIR).mkdir(exist_ok=True)
    (out / PARTS_DIR / "rank00000-0badf00d.jsonl").write_text('{"content": "class0/img00.png", "out')
    survivors = {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
                 for p in out.rglob("*-stylized-*") if not p.name.startswith(".")}
    outputs = len(expected) - 2  # the manifest and the settings file are not outputs
    assert survivors and len(survivors) < outputs, "the kill came too late to test a resume"
    for name in survivors:  # no final name holds a half-written file
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == expected[name]
    result = _run(many, out)
    assert f"written={outputs - len(survivors)} " in result.stdout
    assert {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) for name in survivors} == survivors
    assert _files(out) == expected  # the same files as an uninterrupted run, and nothing else


def test_retry_failed_and_changed_settings(dataset, tmp_path):
    out = tmp_path / "out"
    _run(dataset, out)
    broken = dataset / "content" / "dogs" / "broken.png"
    try:
        _save(random_image(1, 20, 20, seed=99), broken)
        assert "written=0" in _run(dataset, out).stdout  # failures stay failures unless asked
        assert "written=2" in _run(dataset, out, "--retry-failed").stdout
        records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
        assert all(r["status"] == "ok" for r in records) and len(records) == 2 * (len(CONTENT_SIZES) + 1)
    finally:
        broken.write_bytes(b"not an image")
    result = _run(dataset, out, "--alpha", "0.5", expect=1)
    assert "alpha: 1.0 then, 0.5 now" in result.stderr


def test_a_large_image_goes_through_the_tiled_path_in_process(dataset, tmp_path, monkeypatch):
    """A side above the tile size (1024 px) is encoded and decoded tile by tile, never skipped; in this
    process, so the run's thread setting is put back afterwards."""
    from adain_nodes.dataset.stylize import Settings, stylize_dataset
    from adain_nodes.pipeline import DEFAULT_TILING

    content = tmp_path / "content"
    _save(random_image(1, 40, 1090, seed=5), content / "wide.png")
    assert DEFAULT_TILING.applies(40, 1090)
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(dataset / "models"))
    threads = torch.get_num_threads()
    try:
        counts = stylize_dataset(Settings(content, dataset / "style", tmp_path / "out", style_size=0, workers=0))
    finally:
        torch.set_num_threads(threads)
    assert counts["written"] == 1 and counts["manifest_ok"] == 1
    out = next((tmp_path / "out").glob("wide-stylized-*.png"))
    assert Image.open(out).size == (1090, 40)


def _assert_outputs_are_stylize(dataset, out, **option):
    """Every PNG the run wrote is pipeline.stylize(..., **option) of its pair (up to 8-bit rounding) and differs from
    the plain transfer; at least two are checked."""
    records = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    encoder = load_encoder(dataset / "models" / ENCODER_FILE)
    decoder = load_decoder(dataset / "models" / DEFAULT_DECODER)
    encoder.precision = decoder.precision = "auto"

    def to_tensor(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]

    checked = 0
    for record in records:
        if record["status"] == "ok" and record["output"].endswith(".png"):
            content, style = (to_tensor(dataset / kind / record[kind]) for kind in ("content", "style"))
            expected = pipeline.stylize(encoder, decoder, content, style, StandaloneRuntime(), **option)
            plain = pipeline.stylize(encoder, decoder, content, style, StandaloneRuntime())
            written = to_tensor(out / record["output"])
            assert (written - expected).abs().max() <= 1.01 / 255 < (written - plain).abs().max()
            checked += 1
    assert checked >= 2

def test_style_boost_equals_the_one_node_transfer_and_is_part_of_the_settings(dataset, tmp_path):
    """--style-boost 0.5 writes pipeline.stylize(..., boost=0.5) (up to 8-bit rounding); a folder made without it
    is not continued with it, also one whose settings file predates the option."""
    from adain_nodes.dataset.manifest import CONFIG_NAME

    out = tmp_path / "out"
    _run(dataset, out, "--style-boost", "0.5")
    _assert_outputs_are_stylize(dataset, out, boost=0.5)
    assert "style_boost: 0.5 then, 0.0 now" in _run(dataset, out, expect=1).stderr
    plain_out = tmp_path / "plain"
    _run(dataset, plain_out)
    settings = json.loads((plain_out / CONFIG_NAME).read_text())
    del settings["style_boost"]  # as a version before the option wrote it
    (plain_out / CONFIG_NAME).write_text(json.dumps(settings))
    assert "style_boost: 0.0 then, 0.5 now" in _run(dataset, plain_out, "--style-boost", "0.5", expect=1).stderr
    assert "written=0" in _run(dataset, plain_out).stdout
    assert "--style-boost" in _run(dataset, out, "--style-boost", "1.5", expect=2).stderr


def test_style_refine_equals_the_one_node_transfer_and_is_part_of_the_settings(dataset, tmp_path):
    """--style-refine 1 writes pipeline.stylize(..., refine=1) for each pair (up to 8-bit rounding), and a folder
    made without it is not continued with it."""
    out = tmp_path / "out"
    _run(dataset, out, "--style-refine", "1")
    _assert_outputs_are_stylize(dataset, out, refine=1)
    assert "style_refine: 1 then, 0 now" in _run(dataset, out, expect=1).stderr
    assert "--style-refine" in _run(dataset, out, "--style-refine", "9", expect=2).stderr
