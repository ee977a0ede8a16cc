"""stylize-dataset against hostile trees: it never eats its own output, never loses one, never aborts for one
file, never trusts a foreign manifest line, and never removes a file it did not provably write."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from adain_nodes.dataset.manifest import CONFIG_NAME, MANIFEST_NAME, PARTS_DIR
from adain_nodes.dataset.plan import output_name
from conftest import random_image
from test_stylize_dataset import REPO, _env, _run, _save, dataset  # noqa: F401


@pytest.fixture
def tree(dataset, tmp_path) -> Path:  # noqa: F811
    """A private copy of the content and style folders (a run the old code let through writes into them),
    with the shared models."""
    root = tmp_path / "data"
    shutil.copytree(dataset / "content", root / "content")
    shutil.copytree(dataset / "style", root / "style")
    (root / "models").symlink_to(dataset / "models")
    return root


def _tree_files(folder: Path) -> list[str]:
    """The files under ``folder``, less the test harness's logs (``_run`` keeps them beside --out)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if "logs" not in p.parts)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("where", ["content itself", "inside content", "inside style", "around content"])
def test_out_overlapping_content_or_style_is_refused(tree, where):
    out = {"content itself": tree / "content", "inside content": tree / "content" / "dogs" / "out",
           "inside style": tree / "style" / "stylized", "around content": tree}[where]
    before = {name: _tree_files(tree / name) for name in ("content", "style")}
    result = _run(tree, out, expect=1)
    assert "overlaps --" in _error_line(result)
    assert {name: _tree_files(tree / name) for name in ("content", "style")} == before


def test_out_that_is_a_file_is_one_line(tree, tmp_path):
    (tmp_path / "out").write_text("a file")
    assert "is not a folder" in _error_line(_run(tree, tmp_path / "out", expect=1))


@pytest.mark.parametrize("pair", [("waves.png", "waves.jpg"), ("more/mosaic.png", "more_mosaic.jpg")])
def test_styles_that_would_share_output_names_are_refused_before_anything_is_written(tree, tmp_path, pair):
    for name in pair:
        _save(random_image(1, 32, 32, seed=len(name)), tree / "style" / name)
    result = _run(tree, tmp_path / "out", expect=1)
    assert "would both name their outputs" in _error_line(result)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*-stylized-*"))


def test_unwritable_names_are_recorded_as_failed_and_the_rest_is_made(tree, tmp_path):
    bad = os.fsdecode(b"caf\xe9.png")  # Latin-1, not UTF-8
    _save(random_image(1, 24, 24, seed=1), tree / "content" / bad)
    long = "x" * 240 + ".png"  # fits the file system, but not with "-stylized-STYLE" added
    _save(random_image(1, 24, 24, seed=2), tree / "content" / long)
    out = tmp_path / "out"
    result = _run(tree, out)
    records = {r["content"]: r for r in _records(out)}
    assert records["caf\\xe9.png"]["status"] == "failed" and "not valid UTF-8" in records["caf\\xe9.png"]["error"]
    assert records[long]["status"] == "failed" and "longer than the file system allows" in records[long]["error"]
    assert records["cats/a.png"]["status"] == "ok" and (out / records["cats/a.png"]["output"]).is_file()
    assert "written=10 " in result.stdout  # the five readable images, two styles each
    assert "written=0 " in _run(tree, out).stdout  # and a rerun knows them as failed


def test_an_output_path_that_is_a_folder_fails_that_output_only(tree, tmp_path):
    out = tmp_path / "out"
    first = _run(tree, out)
    records = _records(out)
    victim = next(r for r in records if r["status"] == "ok")
    shutil.rmtree(out)
    (out / victim["output"]).mkdir(parents=True)
    (out / victim["output"] / "keep.txt").write_text("someone's file")
    result = _run(tree, out)
    again = {r["output"]: r for r in _records(out)}
    assert again[victim["output"]]["status"] == "failed" and "cannot write" in again[victim["output"]]["error"]
    assert sum(r["status"] == "ok" for r in again.values()) == sum(r["status"] == "ok" for r in records) - 1
    assert (out / victim["output"] / "keep.txt").read_text() == "someone's file"
    assert "Traceback" not in first.stderr + result.stderr


FOREIGN = {"a number": "42", "a list": "[1, 2]", "no status": '{"output": "x.png"}', "not JSON": "{oops",
           "status a number": '{"output": "x.png", "status": 3}'}


@pytest.mark.parametrize("line", list(FOREIGN))
@pytest.mark.parametrize("where", ["manifest", "part file"])
def test_a_foreign_manifest_line_names_file_and_line(tree, tmp_path, line, where):
    out = tmp_path / "out"
    _run(tree, out)
    target = out / MANIFEST_NAME if where == "manifest" else out / PARTS_DIR / "rank00000-0badf00d.jsonl"
    target.parent.mkdir(exist_ok=True)
    lines = target.read_text().splitlines() if target.exists() else ['{"output": "y.png", "status": "ok"}'] * 2
    lines.insert(1, FOREIGN[line])
    target.write_text("\n".join(lines) + "\n")
    message = _error_line(_run(tree, out, expect=1))
    assert f"{target} line 2:" in message and "delete that line" in message


def test_a_partial_last_line_of_a_part_file_is_still_ignored(tree, tmp_path):
    out = tmp_path / "out"
    _run(tree, out)
    (out / PARTS_DIR).mkdir()
    (out / PARTS_DIR / "rank00000-0badf00d.jsonl").write_text('{"content": "cats/a.png", "out')
    assert "written=0 " in _run(tree, out).stdout and not (out / PARTS_DIR).exists()


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '"text"'])
def test_a_foreign_settings_file_is_one_line(tree, tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / CONFIG_NAME).write_text(text)
    message = _error_line(_run(tree, out, expect=1))
    assert "is not a settings file of stylize-dataset" in message


def test_replacing_a_style_images_pixels_is_other_settings(tree, tmp_path):
    out = tmp_path / "out"
    _run(tree, out)
    _save(random_image(1, 32, 40, seed=77), tree / "style" / "waves.png")  # same name, other picture
    message = _error_line(_run(tree, out, expect=1))
    assert "style_files" in message and "pixels changed" in message


def test_a_file_size_limit_stops_the_run_with_one_line_and_nothing_half_written(tree, tmp_path):
    """RLIMIT_FSIZE makes every larger write fail with EFBIG, as a full disk fails with ENOSPC."""
    out = tmp_path / "out"
    code = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000)); sys.argv = ['adain_nodes'] + sys.argv[1:]; "
            "runpy.run_module('adain_nodes', run_name='__main__')")
    args = ["stylize-dataset", "--content", str(tree / "content"), "--style", str(tree / "style"), "--out", str(out),
            "--styles-per-image", "2", "--style-size", "0", "--workers", "0", "--seed", "7"]
    result = subprocess.run([sys.executable, "-c", code, *args], env=_env(tree), capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert result.returncode == 1
    assert "File too large" in _error_line(result) and "rerun to continue" in _error_line(result)
    assert [p for p in out.rglob("*") if p.name.startswith(".") and p.name != PARTS_DIR] == []  # no temporary
    for path in out.rglob("*-stylized-*"):  # the small outputs written before the limit hit are whole
        with Image.open(path) as image:
            image.load()
    # the rest is made on the next run: every output but broken.png's two
    assert "manifest_ok=10 manifest_failed=2" in _run(tree, out).stdout


def test_someone_elses_temporaries_are_never_removed(tree, tmp_path):
    out = tmp_path / "out"
    foreign = [out / ".tmpabc123", out / "cats" / ".notes.txt.0123abcd.tmp", out / ".a-stylized-b.png.89abcdef.tmp"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not the pack's")
    folder = out / "dogs" / ".theirs.0badf00d.tmp"  # a folder of that pattern with no lock, long untouched
    folder.mkdir(parents=True)
    (folder / "data.bin").write_text("not the pack's either")
    old = time.time() - 86400
    os.utime(folder, (old, old))
    _run(tree, out)
    assert all(path.read_text() == "not the pack's" for path in foreign)
    assert (folder / "data.bin").is_file()


def test_output_names_are_unique_in_every_plan():
    from adain_nodes.dataset.plan import plan_jobs

    with pytest.raises(ValueError, match="would both write"):
        plan_jobs(["a-stylized-b.png", "a.png"], ["c.png", "b-stylized-c.png"], 2, seed=0)
    assert output_name("a-stylized-b.png", "c.png") == output_name("a.png", "b-stylized-c.png")
