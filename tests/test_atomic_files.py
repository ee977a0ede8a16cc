"""Writers at once never share a name; killed writers leave nothing a later run cannot remove."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from adain_nodes.atomic_files import atomic_write, remove_stale_temporaries
from adain_nodes.errors import AdaINInputError
from adain_nodes.pipeline import AdaINStyle
from adain_nodes.runner.core_nodes import save_images
from training.checkpoint import remove_run_temporaries

REPO = Path(__file__).resolve().parents[1]
WRITERS = 6


def _at_once(function, count: int = WRITERS) -> list:
    """Run ``function(i)`` in ``count`` threads released together; returns results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = function(i)
        except Exception as exc:  # collected for the assertion
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_runs_saving_with_one_prefix_at_once_keep_every_image(tmp_path):
    images = torch.rand(3, 24, 24, 3)
    results = _at_once(lambda i: save_images(images * (i + 1) / WRITERS, "batch/run", tmp_path, "output", 1,
                                             {"writer": i}, None))
    names = [record["filename"] for result in results for record in result]
    assert len(names) == len(set(names)) == 3 * WRITERS
    assert sorted(os.listdir(tmp_path / "batch")) == sorted(names)


def test_save_style_without_overwrite_has_exactly_one_winner(model_dir):
    from adain_nodes.nodes.styles import AdaINSaveStyle

    style = AdaINStyle({"relu4_1": (torch.rand(1, 8), torch.rand(1, 8) + 0.5)}, "enc", "encoder", "relu4_1")
    results = _at_once(lambda i: AdaINSaveStyle().save(style, "shared_name", overwrite=False))
    assert sum(not isinstance(r, Exception) for r in results) == 1
    losers = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, AdaINInputError) and "exists" in str(r) for r in losers), [repr(r) for r in losers]


def test_a_writer_whose_new_folder_a_sweeper_removes_before_it_locks_starts_over(tmp_path, monkeypatch):
    """The one-winner test's failure under load, made certain: a sweeper locks a writer's fresh folder between
    the writer's open and lock of ``.lock``, finds it unlocked, removes the folder and lets go; the writer then
    locks a deleted file and must notice (its write would fail with FileNotFoundError), not write into nothing."""
    import adain_nodes.atomic_files as atomic_files

    real_lock, swept = atomic_files._lock, []

    def sweep_first(handle) -> bool:
        if not swept and os.path.basename(handle.name) == atomic_files.LOCK_NAME and "wb" in handle.mode:
            swept.extend(remove_stale_temporaries(tmp_path))  # another process's sweep, at the worst moment
        return real_lock(handle)

    monkeypatch.setattr(atomic_files, "_lock", sweep_first)
    atomic_write(tmp_path / "file.bin", lambda tmp: Path(tmp).write_bytes(b"data"))
    assert len(swept) == 1 and not swept[0].exists()  # the race happened: the writer's first folder went
    assert os.listdir(tmp_path) == ["file.bin"] and (tmp_path / "file.bin").read_bytes() == b"data"


KILLED_WRITER = """
import os, signal, sys
from adain_nodes.atomic_files import atomic_write

def write(tmp):
    # what safetensors does: a temporary of its own beside the file it was given, then a rename
    with open(os.path.join(os.path.dirname(tmp), ".tmpAbC123"), "wb") as f:
        f.write(b"half of a decoder")
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(sys.argv[1], write)
"""


def _killed_write(target: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr


def test_a_writer_killed_mid_write_leaves_what_the_next_run_removes(tmp_path):
    out, run_dir = tmp_path / "models" / "decoder.safetensors", tmp_path / "models" / "decoder_run"
    run_dir.mkdir(parents=True)
    users = [out.parent / ".tmpXyZ987", out.parent / ".other.safetensors.0123abcd.tmp", out.parent / "notes.tmp"]
    for path in users:
        path.write_bytes(b"the user's")
    _killed_write(out)
    _killed_write(run_dir / "checkpoint.pt")
    remove_run_temporaries(run_dir, out)
    assert sorted(os.listdir(out.parent)) == sorted([run_dir.name] + [p.name for p in users])
    assert os.listdir(run_dir) == []


def test_a_killed_image_save_is_cleaned_by_the_next_save_into_that_folder(tmp_path):
    _killed_write(tmp_path / "out" / "ComfyUI_00001_.png")
    assert len(os.listdir(tmp_path / "out")) == 1
    save_images(torch.rand(1, 8, 8, 3), "out/ComfyUI", tmp_path, "output", 1, None, None)
    assert os.listdir(tmp_path / "out") == ["ComfyUI_00001_.png"]


def test_a_living_writer_keeps_its_temporary(tmp_path):
    seen = {}

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"data")
        seen["removed"] = remove_stale_temporaries(tmp_path, "file.bin", owned_folder=True)
        seen["still_there"] = Path(tmp).exists()

    atomic_write(tmp_path / "file.bin", write)
    assert seen == {"removed": [], "still_there": True}
    assert os.listdir(tmp_path) == ["file.bin"] and (tmp_path / "file.bin").read_bytes() == b"data"


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_nothing(tmp_path, failure):
    (tmp_path / "keep.bin").write_bytes(b"old")

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise failure

    with pytest.raises(type(failure)):
        atomic_write(tmp_path / "keep.bin", write)
    assert os.listdir(tmp_path) == ["keep.bin"] and (tmp_path / "keep.bin").read_bytes() == b"old"


def test_images_fetched_from_a_server_never_overwrite_local_files(tmp_path):
    from adain_nodes.runner.core_nodes import write_new_file

    (tmp_path / "ComfyUI_00001_.png").write_bytes(b"a local result")
    paths = _at_once(lambda i: write_new_file(tmp_path, "ComfyUI_00001_.png", b"fetched %d" % i))
    assert len(set(paths)) == WRITERS and (tmp_path / "ComfyUI_00001_.png").read_bytes() == b"a local result"
    assert sorted(p.read_bytes() for p in paths) == sorted(b"fetched %d" % i for i in range(WRITERS))
