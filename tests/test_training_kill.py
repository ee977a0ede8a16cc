"""No lost work: SIGKILL the trainer at random moments, many times, and check what it leaves.

Each round starts ``python -m training.train`` (forked from a server that imported torch once, see
``preforked``; ``--resume`` once a checkpoint exists) on the tiny
random data of ``test_training.py`` and kills it with SIGKILL at a seeded random moment of one of
six phases: while starting up, in the middle of the iterations, while the checkpoint is being
written, while the decoder is being written, just after a checkpoint was logged, and just after all
outputs of a checkpoint were written. After every kill:

* ``checkpoint.pt`` (if any) loads with the trainer's own loader, sits on a checkpoint boundary,
  never goes back, and lies at most one checkpoint interval behind the last iteration seen;
* the output decoder (if any) loads with ``load_decoder``, lags the checkpoint by at most one
  interval, and equals the checkpoint's decoder when both are at the same iteration;
* the loss log parses and holds every iteration up to the checkpoint (so a resume has no gap);
* the only other files are the hidden temporaries of interrupted writes, which the model list skips.

Finally a run goes to the end and its decoder and loss records equal, bit for bit, those of an
uninterrupted run (CPU, one thread).
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import torch

from adain_nodes.atomic_files import TEMPORARY_NAME
from adain_nodes.host.paths import MODELS_ENV, list_files
from adain_nodes.models.networks import AdaINDecoder
from adain_nodes.models.weights import load_decoder
from training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from training.train import train

import preforked

from test_training import REPO, _cli, _config, _env, _keep_threads, _records, _weights, data  # noqa: F401

EVERY = 2  # --checkpoint-every
MAX_ITER = 30  # room for two rounds of every phase even where iterations are fast
KILLS = 12
PHASES = ("startup", "iteration", "checkpoint_write", "decoder_write", "after_checkpoint", "after_outputs")
TEMPORARY = TEMPORARY_NAME  # atomic_write's write folders
RUN_FILES = {CHECKPOINT_NAME, "losses.jsonl", "losses.csv", "loss_plot.png"}
PROGRESS = re.compile(r"\] (\d+)/\d+ ")


class Trainer:
    """The trainer forked from the preloaded server (``preforked``); its log is read as the test polls."""

    def __init__(self, args: list[str], log_dir: Path) -> None:
        self.started = time.monotonic()
        self.proc = preforked.Run("training.train", args, _env(), REPO, log_dir)

    def reached(self) -> int:
        """The last iteration the log has reported (the run may be a little further)."""
        return max((int(m.group(1)) for m in PROGRESS.finditer(self.proc.stderr())), default=0)

    def logged(self, text: str) -> bool:
        return text in self.proc.stderr()

    def log(self) -> str:
        return self.proc.stderr()[-3000:]

    def wait_for(self, condition, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"trainer exited ({self.proc.returncode}) before the kill:\n{self.log()}"
            assert time.monotonic() < deadline, f"kill moment not reached in {timeout} s:\n{self.log()}"
            time.sleep(0.001)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
        self.proc.wait(timeout=30)


def _temporaries(folder: Path) -> set[str]:
    return {n for n in os.listdir(folder) if n.startswith(".")} if folder.is_dir() else set()


def _kill_at(phase: str, trainer: Trainer, start: int, out: Path, run_dir: Path, rng: random.Random) -> None:
    """Wait for a random moment of ``phase``, then SIGKILL (also when the wait fails)."""
    try:
        _wait_for_phase(phase, trainer, start, out, run_dir, rng)
    finally:
        trainer.kill()
    assert trainer.proc.returncode == -signal.SIGKILL, trainer.log()


def _wait_for_phase(phase: str, trainer: Trainer, start: int, out: Path, run_dir: Path, rng: random.Random) -> None:
    if phase == "startup":  # imports, model and checkpoint loading, until the data folders are scanned
        delay = rng.uniform(0.05, 2.0)
        trainer.wait_for(lambda: time.monotonic() - trainer.started > delay or trainer.logged("training.data"))
    elif phase == "iteration":
        target = start + rng.randint(1, EVERY + 1)
        trainer.wait_for(lambda: trainer.reached() >= target)
        time.sleep(rng.uniform(0.0, 0.03))
    elif phase == "checkpoint_write":
        old = _temporaries(run_dir)
        trainer.wait_for(lambda: any(n.startswith(f".{CHECKPOINT_NAME}.") for n in _temporaries(run_dir) - old))
        time.sleep(rng.uniform(0.0, 0.01))
    elif phase == "decoder_write":
        old = _temporaries(out.parent)
        trainer.wait_for(lambda: bool(_temporaries(out.parent) - old))
    elif phase == "after_checkpoint":
        trainer.wait_for(lambda: trainer.logged("training.checkpoint: checkpoint"))
    elif phase == "after_outputs":  # the iteration after a checkpoint reports once all outputs are written
        trainer.wait_for(lambda: trainer.reached() > start + EVERY)
        time.sleep(rng.uniform(0.0, 0.03))
    else:
        raise ValueError(phase)


def _check_leftovers(out: Path, run_dir: Path, previous: tuple[int, int], reached: int) -> tuple[int, int]:
    """Assert the files a kill left are sound; returns (checkpoint iteration, decoder iteration)."""
    for name in os.listdir(out.parent):
        assert name in {out.name, run_dir.name} or TEMPORARY.match(name), f"stray file {name}"
    for name in (os.listdir(run_dir) if run_dir.is_dir() else []):
        assert name in RUN_FILES or TEMPORARY.match(name), f"stray file {run_dir.name}/{name}"
    # the hidden temporaries never show up as models
    assert all(not Path(n).name.startswith(".") and ".tmp" not in n for n in list_files("adain"))

    ckpt = 0
    if (run_dir / CHECKPOINT_NAME).exists():
        state = load_checkpoint(run_dir / CHECKPOINT_NAME)
        ckpt = state["iteration"]
        assert ckpt % EVERY == 0 or ckpt == MAX_ITER, ckpt
        AdaINDecoder().load_state_dict(state["decoder"])  # complete and strict
    assert ckpt >= previous[0], f"checkpoint went back from {previous[0]} to {ckpt}"
    assert reached - ckpt <= EVERY, f"iteration {reached} was reached but the checkpoint is at {ckpt}"

    done = 0
    if out.exists():
        decoder = load_decoder(out)
        done = int(decoder.metadata["iterations"])
        assert decoder.metadata["complete"] == ("true" if done == MAX_ITER else "false")
        if done == ckpt:
            written = state.get("ema", state["decoder"])  # the output is the weight average by default
            assert all(torch.equal(v, written[k]) for k, v in decoder.network.state_dict().items())
    # the decoder is written after the checkpoint, from the same state: it may lag, never lead or go back
    assert previous[1] <= done <= ckpt, (previous[1], done, ckpt)

    log = run_dir / "losses.jsonl"
    iterations = [json.loads(line)["iteration"] for line in log.read_text().splitlines()] if log.exists() else []
    assert iterations == list(range(1, len(iterations) + 1)), iterations
    assert len(iterations) >= ckpt, f"the loss log ends at {len(iterations)}, before the checkpoint at {ckpt}"
    return ckpt, done


def test_sigkill_at_random_moments_loses_at_most_one_interval(data, tmp_path, monkeypatch):
    out = tmp_path / "models" / "kill.safetensors"
    run_dir = out.with_name(out.stem + "_run")
    monkeypatch.setenv(MODELS_ENV, str(out.parent))
    args = _cli(data, out, "--max-iter", str(MAX_ITER), "--batch-size", "2", "--workers", "0",
                "--checkpoint-every", str(EVERY))
    rng = random.Random(6)
    phases = [phase for _ in range(-(-KILLS // len(PHASES))) for phase in rng.sample(PHASES, len(PHASES))][:KILLS]
    ckpt, done, interrupted_writes = 0, 0, 0
    for phase in phases:
        start = ckpt
        t0 = time.monotonic()
        before = _temporaries(out.parent) | _temporaries(run_dir)
        trainer = Trainer(args + (["--resume"] if (run_dir / CHECKPOINT_NAME).exists() else []), tmp_path / "logs")
        _kill_at(phase, trainer, start, out, run_dir, rng)
        reached = trainer.reached()
        ckpt, done = _check_leftovers(out, run_dir, previous=(ckpt, done), reached=reached)
        interrupted_writes += bool((_temporaries(out.parent) | _temporaries(run_dir)) - before)
        print(f"{phase}: {start}->{reached} seen, checkpoint {ckpt}, decoder {done}, {time.monotonic() - t0:.1f} s")
    assert ckpt < MAX_ITER
    # polling every millisecond catches a 40 MB checkpoint or 14 MB decoder before its rename
    assert interrupted_writes >= 1

    finished = preforked.run("training.train", [*args, "--resume"], _env(), REPO, tmp_path / "logs", timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"resuming from {run_dir / CHECKPOINT_NAME} at iteration {ckpt}" in finished.stderr
    assert _check_leftovers(out, run_dir, previous=(ckpt, done), reached=MAX_ITER) == (MAX_ITER, MAX_ITER)

    reference = train(_config(data, tmp_path / "ref.safetensors", max_iter=MAX_ITER))
    a, b = _weights(out), _weights(reference.out)
    assert all(torch.equal(a[k], b[k]) for k in b)
    keys = ("iteration", "loss", "content_loss", "style_loss", "lr")
    assert [[r[k] for k in keys] for r in _records(run_dir)] == \
        [[r[k] for k in keys] for r in _records(tmp_path / "ref_run")]
