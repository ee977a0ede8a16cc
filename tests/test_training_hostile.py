"""The trainer never writes NaN weights, never lies about its last checkpoint, and refuses bad options and files
with one clear line before any work."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adain_nodes.models.networks import AdaINDecoder
from adain_nodes.models.weights import save_safetensors
from test_training import _config, _keep_threads, _write_images, data  # noqa: F401
from training.checkpoint import CHECKPOINT_NAME
from training.train import main, train


def _args(data: Path, out: Path, *extra: str) -> list[str]:  # noqa: F811
    return ["--content", str(data / "content"), "--style", str(data / "style"), "--encoder",
            str(data / "encoder.safetensors"), "--out", str(out), "--batch-size", "2", "--crop", "32", "--resize", "48",
            "--resize-mode", "short", "--min-image-size", "16", "--workers", "0", "--threads", "1", "--log-every", "1",
            "--sample-every", "0", "--checkpoint-every", "0", "--no-progress", "--precision", "fp32", "--max-iter",
            "2", *extra]


def _finite(path: Path) -> bool:
    tensors = torch.load(path, weights_only=True)["decoder"] if path.suffix == ".pt" else load_file(path)
    return all(torch.isfinite(t).all() for t in tensors.values())


def test_diverging_weights_are_never_written_and_the_message_is_true(data, tmp_path):  # noqa: F811
    """The loss is logged only every 100 steps here; the weights are checked before each write anyway."""
    out = tmp_path / "d.safetensors"
    cfg = _config(data, out, lr=1e30, max_iter=6, log_every=100, checkpoint_every=1, ema_decay=0.0)
    with pytest.raises(FloatingPointError, match=r"nothing was written \(the last checkpoint, of iteration 1 in "):
        train(cfg)
    checkpoint = cfg.run_path / CHECKPOINT_NAME
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 1
    assert _finite(checkpoint) and _finite(out)


def test_diverging_before_any_checkpoint_says_so(data, tmp_path, caplog):  # noqa: F811
    out = tmp_path / "d.safetensors"
    assert main(_args(data, out, "--lr", "1e30", "--log-every", "100", "--max-iter", "4")) == 1
    assert "no checkpoint was written" in caplog.text and not out.exists()
    assert not (tmp_path / "d_run" / CHECKPOINT_NAME).exists()


BAD_OPTIONS = {"--log-every": "0", "--lr": "nan", "--lr-decay": "-1", "--workers": "-1", "--threads": "-2",
               "--sample-every": "-1", "--checkpoint-every": "-5", "--warmup-iters": "-1", "--content-weight": "inf"}


@pytest.mark.parametrize("option", list(BAD_OPTIONS))
def test_options_out_of_range_are_one_line_before_any_work(data, tmp_path, caplog, option):  # noqa: F811
    out = tmp_path / "d.safetensors"
    assert main(_args(data, out, option, BAD_OPTIONS[option])) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and option in errors[0].getMessage()
    assert list(tmp_path.iterdir()) == []


def _checkpoint(data: Path, tmp_path: Path) -> Path:  # noqa: F811
    out = tmp_path / "first.safetensors"
    assert main(_args(data, out)) == 0
    return tmp_path / "first_run" / CHECKPOINT_NAME


def _break(case: str, data: Path, tmp_path: Path) -> tuple[list[str], str]:  # noqa: F811
    """Arguments that go wrong in one way, and the words the error must have."""
    out = tmp_path / "d.safetensors"
    if case == "missing encoder":
        return _args(data, out, "--encoder", str(tmp_path / "nope.safetensors")), "no such weight file"
    if case == "NaN warm start":
        decoder = AdaINDecoder()
        state = {k: v.clone() for k, v in decoder.state_dict().items()}
        next(iter(state.values())).view(-1)[0] = float("nan")
        save_safetensors(state, tmp_path / "nan.safetensors", {"kind": "decoder"})
        return _args(data, out, "--warm-start", str(tmp_path / "nan.safetensors")), "NaN"
    if case == "images all unreadable":
        content = tmp_path / "content"
        _write_images(content, 3, seed=4)
        for path in content.rglob("img*"):
            path.write_bytes(path.read_bytes()[:120])  # the header reads, the data do not
        return _args(data, out, "--content", str(content)), "none of its"
    if case == "run dir is a file":
        (tmp_path / "run").write_text("a file")
        return _args(data, out, "--run-dir", str(tmp_path / "run")), "is not a folder"
    if case == "run dir inside content":
        content = tmp_path / "content"
        shutil.copytree(data / "content", content)
        return _args(data, out, "--content", str(content), "--run-dir", str(content / "run")), "its own sample grids"
    checkpoint = _checkpoint(data, tmp_path)
    resume = ["--resume", str(checkpoint)]
    if case == "truncated checkpoint":
        checkpoint.write_bytes(checkpoint.read_bytes()[:3000])
        return _args(data, out, *resume), "not a readable checkpoint"
    if case == "foreign checkpoint":
        torch.save({"version": 1, "decoder": [1, 2]}, checkpoint)
        return _args(data, out, *resume), "lacking or garbling"
    if case == "a list as checkpoint":
        torch.save([1, 2, 3], checkpoint)
        return _args(data, out, *resume), "not a checkpoint of this trainer"
    if case == "resume as the other decoder kind":
        return _args(data, out, *resume, "--decoder", "skip"), "trains a relu4_1 decoder"
    raise AssertionError(case)


CASES = ["missing encoder", "NaN warm start", "images all unreadable", "run dir is a file", "run dir inside content",
         "truncated checkpoint", "foreign checkpoint", "a list as checkpoint", "resume as the other decoder kind"]


@pytest.mark.parametrize("case", CASES)
def test_bad_files_are_one_line_before_any_work(data, tmp_path, caplog, case):  # noqa: F811
    args, words = _break(case, data, tmp_path)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    caplog.clear()
    assert main(args) in (1, 2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and words in errors[0].getMessage(), [r.getMessage() for r in errors]
    assert not (tmp_path / "d.safetensors").exists() and not (tmp_path / "d_run").exists()
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == before  # nothing created (no run folder) and nothing changed
