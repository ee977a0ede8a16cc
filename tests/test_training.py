"""The decoder trainer on tiny random images: loss falls, exact resume, DDP equivalence, bad files, output.

A random-weight encoder (He init, so features keep their scale) stands in for VGG19; crops are
32 px, so each run takes a fraction of a second per iteration on a CPU.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from adain_nodes.core.layers import STYLE_LAYERS
from adain_nodes.core.stats import EPS, mean_std
from adain_nodes.models.networks import AdaINDecoder, SkipDecoder, VGGEncoder
from adain_nodes.models.weights import file_sha256, load_decoder, load_encoder, save_safetensors
from training.checkpoint import load_checkpoint
from training.config import TrainConfig, parse_overrides
from training.data import PairDataset, PairSampler, scan_images
from adain_nodes.models.precision import cpu_has_fast_bf16, resolve_precision
from training.losses import (STABILITY_NOISE, LossWeights, channel_spreads, colour_distance, compute_losses,
                             image_balanced, shifted_view, statistics, std_error_weights, style_loss,
                             style_loss_per_image, total_variation)
from training.determinism import deterministic_kernels
from training.train import autocast_dtype, build_decoder, resolve_config, train

import preforked

REPO = Path(__file__).resolve().parents[1]


def _write_images(folder: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        sub = folder / ("nested" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        low = (rng.random((5, 5, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(low).resize((40 + 4 * i, 36 + 6 * i), Image.BICUBIC)
        image.save(sub / f"img{i}.{('jpg', 'png', 'webp')[i % 3]}")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Content and style folders of small smooth random images, and a random He-initialised encoder."""
    root = tmp_path_factory.mktemp("train_data")
    _write_images(root / "content", 6, seed=1)
    _write_images(root / "style", 5, seed=2)
    torch.manual_seed(0)
    encoder = VGGEncoder()
    for module in encoder:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    save_safetensors(encoder.state_dict(), root / "encoder.safetensors", {"kind": "encoder"})
    return root


@pytest.fixture(autouse=True)
def _keep_threads():
    """train() sets the process's thread count (--threads); give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _config(data: Path, out: Path, **options) -> TrainConfig:
    base = dict(content=str(data / "content"), style=str(data / "style"), encoder=str(data / "encoder.safetensors"),
                out=str(out), batch_size=2, crop=32, resize=48, resize_mode="short", min_image_size=16,
                workers=0, threads=1, log_every=1, sample_every=0, checkpoint_every=0, progress=False,
                precision="fp32", deterministic=True)  # exact comparisons hold on a GPU too
    return TrainConfig(**{**base, **options})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_decoder(path).network.state_dict()


def test_loss_falls(data, tmp_path):
    """Training lowers the loss on a fixed batch (batch-to-batch noise makes raw records unreliable)."""
    cfg = _config(data, tmp_path / "decoder.safetensors", max_iter=16, sample_every=8)
    result = train(cfg)
    assert result.iteration == 16 and len(_records(tmp_path / "decoder_run")) == 16
    dataset = PairDataset(scan_images(cfg.content, 16), scan_images(cfg.style, 16), cfg.crop, cfg.resize,
                          cfg.resize_mode)
    items = [dataset[(i, i % 6, i % 5)] for i in range(6)]
    content, style = torch.stack([c for c, _ in items]), torch.stack([s for _, s in items])
    encoder = load_encoder(cfg.encoder).network
    with torch.no_grad():
        before = compute_losses(encoder, build_decoder(cfg)[0], content, style).total.item()
        after = compute_losses(encoder, load_decoder(result.out).network, content, style).total.item()
    assert after < 0.5 * before, (before, after)
    assert (tmp_path / "decoder_run" / "loss_plot.png").is_file()
    assert Image.open(tmp_path / "decoder_run" / "samples" / "iter_0000016.png").size == (3 * 32 + 4, 2 * 32 + 2)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]


def test_resume_is_exact(data, tmp_path):
    """4 iterations, stop, resume to 7 (with a worker process) equals 7 uninterrupted iterations."""
    full = train(_config(data, tmp_path / "full.safetensors", max_iter=7, workers=1))
    part = _config(data, tmp_path / "part.safetensors", max_iter=4, workers=1, checkpoint_every=2)
    train(part)
    assert load_checkpoint(tmp_path / "part_run" / "checkpoint.pt")["iteration"] == 4
    # the resumed options come from the checkpoint; only max_iter is given again
    resumed = resolve_config({"out": part.out, "resume": "auto", "max_iter": 7})
    assert resumed.workers == 1 and resumed.crop == 32
    result = train(resumed)
    assert result.start_iteration == 4 and result.iteration == 7
    a, b = _weights(full.out), _weights(result.out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["iteration"] for r in _records(tmp_path / "part_run")] == list(range(1, 8))
    assert [r["loss"] for r in _records(tmp_path / "part_run")] == [r["loss"] for r in _records(tmp_path / "full_run")]


def test_deterministic_kernels_cover_a_step_and_are_handed_back(data, tmp_path):
    """--deterministic finds an ordered kernel for every op of a step (no warning names one), then restores torch."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(_config(data, tmp_path / "d.safetensors", max_iter=2))
    assert [str(w.message) for w in caught if "determinis" in str(w.message)] == []
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    with deterministic_kernels(True):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
    assert not torch.are_deterministic_algorithms_enabled()


def test_weight_average_is_the_output_and_resumes_exactly(data, tmp_path):
    """--ema-decay writes the running average (not the last weights), and resume carries it on."""
    decay = 0.75
    full = train(_config(data, tmp_path / "full.safetensors", max_iter=3, ema_decay=decay))
    state = load_checkpoint(tmp_path / "full_run" / "checkpoint.pt")
    out = _weights(full.out)
    assert all(torch.equal(out[k], state["ema"][k]) for k in out)
    assert not all(torch.equal(out[k], state["decoder"][k]) for k in out)
    # the average after one step, by hand: start (seeded init) lerped towards the trained weights by the
    # ramped decay of the first update, min(0.75, (1 + 0) / (10 + 0))
    one = train(_config(data, tmp_path / "one.safetensors", max_iter=1, ema_decay=decay))
    raw_one = load_checkpoint(tmp_path / "one_run" / "checkpoint.pt")["decoder"]
    start = train(_config(data, tmp_path / "zero.safetensors", max_iter=0))
    init = _weights(start.out)
    averaged = _weights(one.out)
    assert all(torch.allclose(averaged[k], init[k].lerp(raw_one[k], 1 - 1 / 10)) for k in averaged)
    train(_config(data, tmp_path / "part.safetensors", max_iter=2, ema_decay=decay))
    resumed = train(resolve_config({"out": str(tmp_path / "part.safetensors"), "resume": "auto", "max_iter": 3}))
    again = _weights(resumed.out)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_start_removes_only_its_own_stale_temporaries(data, tmp_path):
    """A killed run's half-written files go at the next start; other files beside the output stay."""
    out = tmp_path / "models" / "mine.safetensors"
    run_dir = tmp_path / "models" / "mine_run"
    run_dir.mkdir(parents=True)
    stale = [run_dir / ".checkpoint.pt.0123abcd.tmp", run_dir / ".tmpa1b2c3",
             out.parent / ".mine.safetensors.89abcdef.tmp"]
    foreign = [out.parent / ".theirs.safetensors.89abcdef.tmp", out.parent / ".tmpa1b2c3",
               out.parent / "notes.tmp", run_dir / "keep.txt"]
    for path in stale + foreign:
        path.write_bytes(b"partial")
    train(_config(data, out, max_iter=1))
    assert [p.name for p in stale if p.exists()] == []
    assert all(p.exists() for p in foreign)


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--content", str(data / "content"), "--style", str(data / "style"), "--encoder",
            str(data / "encoder.safetensors"), "--out", str(out), "--crop", "32", "--resize", "48",
            "--resize-mode", "short", "--min-image-size", "16", "--threads", "1", "--log-every", "1",
            "--sample-every", "0", "--no-progress", "--precision", "fp32", "--deterministic", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def test_sigterm_checkpoints_and_resume_continues(data, tmp_path):
    """A SIGTERM mid-run leaves a checkpoint and a loadable decoder; resuming matches an uninterrupted run.

    The signal goes to the whole process group, data worker included, as torchrun, ``kill -- -PGID`` and
    container stops send it: the worker must outlive it so the trainer can finish its checkpoint."""
    out = tmp_path / "run.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *_cli(data, out, "--max-iter", "100000",
                                                                            "--batch-size", "2", "--workers", "1")],
                            cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        seen.append(line)
        if "] 3/100000" in line or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    log_text = "".join(seen) + rest
    assert proc.returncode == 0, log_text
    assert "SIGTERM received" in log_text
    stopped_at = load_checkpoint(tmp_path / "run_run" / "checkpoint.pt")["iteration"]
    assert 3 <= stopped_at < 100000
    assert load_decoder(out).metadata["iterations"] == str(stopped_at)

    resumed = train(resolve_config({"out": str(out), "resume": "auto", "max_iter": stopped_at + 2}))
    reference = train(_config(data, tmp_path / "ref.safetensors", max_iter=stopped_at + 2))
    a, b = _weights(resumed.out), _weights(reference.out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _ddp_cli(data: Path, out: Path, *extra: str) -> list[str]:
    """The two-process runs' options: batch 4 split over the ranks, one data worker each."""
    return _cli(data, out, "--batch-size", "4", "--workers", "1", *extra)


def _torchrun(data: Path, out: Path, *extra: str) -> None:
    """Two CPU processes under torchrun (gloo), on the CPU also where a GPU is present."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "training.train", *_ddp_cli(data, out, "--device", "cpu", *extra)]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory) -> Path:
    """One two-process run straight to 4 (checkpoints at 2 and 4), shared by the DDP tests."""
    out = tmp_path_factory.mktemp("ddp") / "full.safetensors"
    _torchrun(data, out, "--max-iter", "4", "--checkpoint-every", "2")
    return out


def test_two_process_gloo_ddp_matches_single_process(data, ddp_run, tmp_path):
    assert load_decoder(ddp_run).metadata["world_size"] == "2"
    single = train(_config(data, tmp_path / "single.safetensors", max_iter=4, batch_size=4))
    # Adam turns float-noise gradients (near zero) into full-size steps of either sign, so compare the
    # updates as a whole: they must agree far better than two different data streams would.
    init = build_decoder(_config(data, ddp_run))[0].state_dict()
    a, b = _weights(ddp_run), _weights(single.out)
    delta_a = torch.cat([(a[k] - init[k]).flatten() for k in a])
    delta_b = torch.cat([(b[k] - init[k]).flatten() for k in a])
    assert delta_b.norm() > 0
    ratio = float((delta_a - delta_b).norm() / delta_b.norm())
    print(f"DDP vs single update mismatch {ratio:.2e}")
    assert ratio < 0.05, ratio
    ddp_losses = [r["loss"] for r in _records(ddp_run.with_name("full_run"))]
    single_losses = [r["loss"] for r in _records(tmp_path / "single_run")]
    np.testing.assert_allclose(ddp_losses, single_losses, rtol=1e-4)


def _two_ranks(data: Path, out: Path, log_dir: Path, *extra: str) -> None:
    """The same two-process run as ``_torchrun``, its ranks forked from the preloaded server with the
    variables torchrun sets (torchrun itself is exercised by ``ddp_run``; here it would add 8 s a run)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = _ddp_cli(data, out, *extra)
    ranks = [preforked.Run("training.train", args, {**_env(), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                                    "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                                    "MASTER_PORT": str(port)}, REPO, log_dir)
             for r in range(2)]
    codes = [rank.wait(180) for rank in ranks]
    assert codes == [0, 0], "\n".join(rank.stderr()[-3000:] for rank in ranks)


def test_two_process_resume_is_exact(data, ddp_run, tmp_path):
    """A DDP run stopped at 2 and resumed to 4 (data workers on) equals one run straight to 4."""
    _two_ranks(data, tmp_path / "part.safetensors", tmp_path / "logs", "--max-iter", "2")
    _two_ranks(data, tmp_path / "part.safetensors", tmp_path / "logs", "--max-iter", "4", "--resume")
    a, b = _weights(ddp_run), _weights(tmp_path / "part.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _records(tmp_path / "part_run")] == \
        [r["loss"] for r in _records(ddp_run.with_name("full_run"))]


def test_ranks_split_the_global_batch():
    one = PairSampler(7, 5, local_batch=4, seed=3)
    ranks = [PairSampler(7, 5, local_batch=2, seed=3, rank=r, world_size=2) for r in range(2)]
    stream = iter(one)
    parts = [iter(s) for s in ranks]
    for _ in range(5):
        expected = [next(stream) for _ in range(4)]
        got = [next(parts[0]) for _ in range(2)] + [next(parts[1]) for _ in range(2)]
        assert got == expected
    resumed = iter(PairSampler(7, 5, local_batch=4, seed=3, start_step=5))
    assert [next(resumed) for _ in range(4)] == [next(stream) for _ in range(4)]


def test_bad_images_are_skipped(data, tmp_path, caplog):
    content = tmp_path / "content"
    _write_images(content, 2, seed=5)
    (content / "garbage.jpg").write_bytes(b"this is not a JPEG at all")
    Image.open(content / "nested" / "img1.png").resize((60, 60)).save(content / "truncated.png")
    (content / "truncated.png").write_bytes((content / "truncated.png").read_bytes()[:200])
    Image.new("RGB", (8, 8), "red").save(content / "tiny.png")
    (content / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        result = train(_config(data, tmp_path / "d.safetensors", content=str(content), max_iter=4))
    assert result.iteration == 4
    text = caplog.text
    assert "skipping unreadable image" in text and "garbage.jpg" in text
    assert "skipping tiny image" in text and "tiny.png" in text
    assert "fails to decode" in text and "truncated.png" in text


def test_output_loads_in_decoder_node(data, tmp_path, monkeypatch):
    from adain_nodes.nodes.loaders import AdaINDecoderLoader

    out = tmp_path / "models" / "my_decoder.safetensors"
    result = train(_config(data, out, max_iter=2))
    monkeypatch.setenv("ADAIN_MODELS_DIR", str(out.parent))
    decoder = AdaINDecoderLoader().load("my_decoder.safetensors")[0]
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format_version"] == "1" and meta["adain_layer"] == "relu4_1"
    assert meta["encoder"] == "encoder.safetensors"
    assert meta["encoder_sha256"] == file_sha256(data / "encoder.safetensors")
    assert meta["iterations"] == "2" and meta["complete"] == "true"
    assert meta["data"].endswith("short side 48, zoomed by a random factor in [0.6, 1], random 32 px crops")
    assert "content images" in meta["data"]
    assert set(json.loads(meta["final_losses"])) == {"loss", "content_loss", "style_loss"}
    assert TrainConfig(**json.loads(meta["training_options"])).crop == 32
    saved = load_checkpoint(result.checkpoint)["ema"]  # the output is the weight average (default)
    assert all(torch.equal(decoder.network.state_dict()[k], saved[k]) for k in saved)
    assert decoder.network(torch.rand(1, 512, 4, 4)).shape == (1, 3, 32, 32)


def test_warm_start_and_bf16(data, tmp_path):
    torch.manual_seed(7)
    start = AdaINDecoder()
    save_safetensors(start.state_dict(), tmp_path / "start.safetensors", {"trained_steps": "500"})
    result = train(_config(data, tmp_path / "w.safetensors", warm_start=str(tmp_path / "start.safetensors"),
                           max_iter=0))
    loaded = load_decoder(result.out)
    assert all(torch.equal(loaded.network.state_dict()[k], v) for k, v in start.state_dict().items())
    assert loaded.metadata["trained_steps"] == "500" and loaded.metadata["warm_start"] == "start.safetensors"
    result = train(_config(data, tmp_path / "b.safetensors", warm_start=str(tmp_path / "start.safetensors"),
                           max_iter=2, precision="bf16", warmup_iters=4, run_dir=str(tmp_path / "b_run")))
    assert load_decoder(result.out).metadata["trained_steps"] == "502"
    lrs = [r["lr"] for r in _records(tmp_path / "b_run")]
    assert lrs == pytest.approx([1e-4 * 1 / 4, 1e-4 * 2 / 4 / (1 + 5e-5)])
    assert all(np.isfinite(v) for v in result.losses.values())


def test_cooldown_branches_from_a_checkpoint(data, tmp_path):
    """A relay's checkpoint resumed with --cooldown-iters: the stable learning rate until the last N iterations,
    then a linear fall to 1/N of it at the last one; the weights it ends at differ from the stable run's."""
    part = _config(data, tmp_path / "relay.safetensors", max_iter=2, lr=1e-3, lr_decay=0.0, checkpoint_every=1)
    train(part)
    train(resolve_config({"out": part.out, "resume": "auto", "max_iter": 6}))
    train(_config(data, tmp_path / "cooled.safetensors", max_iter=2, lr=1e-3, lr_decay=0.0, checkpoint_every=1))
    train(resolve_config({"out": str(tmp_path / "cooled.safetensors"), "resume": "auto", "max_iter": 6,
                          "cooldown_iters": 3}))
    assert [r["lr"] for r in _records(tmp_path / "relay_run")] == pytest.approx([1e-3] * 6)
    assert [r["lr"] for r in _records(tmp_path / "cooled_run")] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 1e-3, 1e-3 * 2 / 3, 1e-3 / 3])
    stable, cooled = (load_checkpoint(tmp_path / f"{name}_run" / "checkpoint.pt")["decoder"]
                      for name in ("relay", "cooled"))
    assert not torch.equal(stable["1.weight"], cooled["1.weight"])
    with pytest.raises(ValueError, match="--cooldown-iters"):
        _config(data, tmp_path / "x.safetensors", max_iter=2, cooldown_iters=3).validate()


def test_warm_started_average_does_not_restart_its_ramp(data, tmp_path):
    """The average's ramp counts the warm-start decoder's steps: one step after a warm start from a
    decoder of 500 steps the decay is (1 + 500) / (10 + 500), not the 1/10 of a fresh decoder's first step."""
    torch.manual_seed(8)
    start = AdaINDecoder()
    save_safetensors(start.state_dict(), tmp_path / "start.safetensors", {"trained_steps": "500"})
    result = train(_config(data, tmp_path / "w.safetensors", warm_start=str(tmp_path / "start.safetensors"),
                           max_iter=1, ema_decay=0.999, run_dir=str(tmp_path / "w_run")))
    raw = load_checkpoint(tmp_path / "w_run" / "checkpoint.pt")["decoder"]
    averaged, initial = _weights(result.out), start.state_dict()
    assert not all(torch.equal(raw[k], initial[k]) for k in raw)
    decay = (1 + 500) / (10 + 500)
    assert all(torch.allclose(averaged[k], initial[k].lerp(raw[k], 1 - decay), atol=1e-8) for k in averaged)


def test_command_line_options():
    given = parse_overrides(["--content", "c", "--style", "s", "--encoder", "e", "--out", "o.safetensors",
                             "--batch-size", "4", "--precision", "bf16", "--no-progress", "--resume"])
    assert given == {"content": "c", "style": "s", "encoder": "e", "out": "o.safetensors", "batch_size": 4,
                     "precision": "bf16", "progress": False, "resume": "auto"}
    cfg = replace(TrainConfig(**given), resume=None)
    assert (cfg.lr, cfg.lr_decay, cfg.style_weight, cfg.content_weight, cfg.crop, cfg.resize) == \
        (1e-4, 5e-5, 10.0, 1.0, 256, 512)
    with pytest.raises(ValueError, match="--out must end"):
        TrainConfig(content="c", style="s", encoder="e", out="o.pth").validate()
    files = dict(content="c", style="s", encoder="e", out="o.safetensors")
    with pytest.raises(ValueError, match=r"--ema-decay must be in \[0, 1\)"):
        TrainConfig(**files, ema_decay=1.0).validate()
    with pytest.raises(ValueError, match="--tv-weight must be a finite number >= 0"):
        TrainConfig(**files, tv_weight=-1.0).validate()
    with pytest.raises(ValueError, match="--style-weight must be a finite number >= 0"):
        TrainConfig(**files, style_weight=float("nan")).validate()
    assert parse_overrides(["--stability-weight", "20"])["stability_weight"] == 20.0
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="--stability-weight must be a finite number >= 0"):
            TrainConfig(**files, stability_weight=bad).validate()
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"--min-scale must be in \(0, 1\]"):
            TrainConfig(**files, min_scale=bad).validate()
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"--max-scale must be a finite number >= 1"):
            TrainConfig(**files, max_scale=bad).validate()


def test_min_scale_zooms_out_so_crops_can_show_the_whole_image(tmp_path):
    """Corner blocks 40 px apart never share a 32 px crop at full scale; zoomed out by up to 2x, some crops hold both.
    Crops stay deterministic per position, and without the zoom they are the crops of earlier versions."""
    image = np.full((64, 64, 3), 128, np.uint8)
    image[:12, :12] = (255, 0, 0)
    image[-12:, -12:] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "corners.png")
    files = [tmp_path / "corners.png"]

    def both_corners(dataset):
        crops = [dataset[(i, 0, 0)][0] for i in range(40)]
        assert all(c.shape == (3, 32, 32) for c in crops)
        return sum(bool((c[0] > 0.8).any() and (c[2] > 0.8).any()) for c in crops)

    plain = PairDataset(files, files, crop=32, resize=64, resize_mode="short")
    zoomed = PairDataset(files, files, crop=32, resize=64, resize_mode="short", min_scale=0.5)
    assert both_corners(plain) == 0
    assert both_corners(zoomed) > 0
    assert torch.equal(zoomed[(7, 0, 0)][0], zoomed[(7, 0, 0)][0])
    unzoomed = PairDataset(files, files, crop=32, resize=64, resize_mode="short", min_scale=1.0)
    assert torch.equal(plain[(3, 0, 0)][0], unzoomed[(3, 0, 0)][0])


def test_max_scale_zooms_in_so_crops_also_show_soft_upsampled_detail(tmp_path):
    """One-pixel stripes keep full contrast between neighbouring columns in crops at scale 1; crops enlarged by up to
    3x blend neighbours, so their mean column-to-column step falls. Crops stay deterministic per position."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, ::2] = 255
    Image.fromarray(image).save(tmp_path / "stripes.png")
    files = [tmp_path / "stripes.png"]

    def column_step(dataset):
        crops = torch.stack([dataset[(i, 0, 0)][0] for i in range(20)])
        assert crops.shape == (20, 3, 32, 32)
        return (crops[..., 1:] - crops[..., :-1]).abs().mean().item()

    plain = PairDataset(files, files, crop=32, resize=64, resize_mode="short")
    enlarged = PairDataset(files, files, crop=32, resize=64, resize_mode="short", max_scale=3.0)
    assert column_step(plain) > 0.99
    assert column_step(enlarged) < 0.8 * column_step(plain)
    assert torch.equal(enlarged[(5, 0, 0)][0], enlarged[(5, 0, 0)][0])


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    """torchrun with two processes on a one-GPU machine: the second process is told what to change, instead of
    CUDA's 'invalid device ordinal' (seen on a one-GPU H200)."""
    from training.train import Distributed, pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="process 1 on this machine has no GPU of its own .1 visible.: start torchrun "
                                         "with --nproc_per_node 1 or fewer, or train on the CPU with --device cpu"):
        pick_device("auto", Distributed(1, 2, 1, torch.device("cpu")))
    assert pick_device("cpu", Distributed(1, 2, 1, torch.device("cpu"))) == torch.device("cpu")


def test_automatic_precision_per_device():
    """Training and the nodes pick bf16 on the same CPUs (one definition of a fast-bf16 CPU)."""
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_fast_bf16() else None)
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    assert resolve_precision("auto", torch.device("cuda")) == torch.float16
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        autocast_dtype("fp16", cpu)


def test_total_variation_option():
    flat, checker = torch.full((1, 3, 8, 8), 0.5), (torch.arange(8)[:, None] + torch.arange(8)).remainder(2)
    assert float(total_variation(flat)) == 0.0
    assert float(total_variation(checker.float().expand(1, 3, 8, 8))) == 2.0  # every neighbour differs by 1


@pytest.mark.parametrize("term, weight", [("tv", 5.0), ("colour", 100.0), ("stability", 10.0)])
def test_optional_term_is_trained_and_logged(data, tmp_path, term, weight):
    train(_config(data, tmp_path / f"{term}.safetensors", max_iter=2, **{f"{term}_weight": weight}))
    records = _records(tmp_path / f"{term}_run")
    assert all(r[f"{term}_loss"] > 0 for r in records)
    assert all(abs(r["loss"] - (r["content_loss"] + 10 * r["style_loss"] + weight * r[f"{term}_loss"]))
               < 1e-3 * r["loss"] for r in records)


def test_colour_distance_compares_colour_distributions():
    """Zero for the same colours in another order; a constant colour shift c costs |c|^2/3 (the mean of
    (d.c)^2 over directions d spread evenly on the sphere); strokes of blue and yellow are not their
    green blend, which has the same mean colour."""
    torch.manual_seed(5)
    image = torch.rand(2, 3, 16, 16)
    shuffled = image.flatten(2)[..., torch.randperm(256)].reshape(2, 3, 16, 16)
    assert float(colour_distance(image, shuffled)) < 1e-10
    shift = torch.tensor([0.1, -0.2, 0.05])
    expected = float((shift ** 2).sum()) / 3
    assert abs(float(colour_distance(image, image + shift[:, None, None])) - expected) < 0.03 * expected
    blue, yellow = torch.tensor([0.1, 0.2, 0.8]), torch.tensor([0.9, 0.8, 0.1])
    strokes = torch.stack([blue] * 128 + [yellow] * 128, dim=1).reshape(1, 3, 16, 16)  # top blue, bottom yellow
    green = ((blue + yellow) / 2)[None, :, None, None].expand(1, 3, 16, 16)
    assert float(colour_distance(green, strokes)) > 0.05
    small = torch.nn.functional.interpolate(strokes, size=8)  # sizes may differ: compared by quantiles
    assert float(colour_distance(small, strokes)) < 1e-3 < float(colour_distance(green, strokes))


def test_identity_terms_are_the_reconstruction_errors(data):
    """The identity terms equal an independent reconstruction error; the paper's terms do not change."""
    encoder = load_encoder(data / "encoder.safetensors").network
    torch.manual_seed(3)
    decoder = AdaINDecoder()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    weights = LossWeights(identity_pixel=50.0, identity_feature=1.0)
    with torch.no_grad():
        both = compute_losses(encoder, decoder, content, style, weights)
        paper = compute_losses(encoder, decoder, content, style)
        layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
        reconstruction = decoder(encoder.encode(content)[0])
        expected_pixel = ((reconstruction - content) ** 2).mean()
        expected_feature = sum(((a - b) ** 2).mean() for a, b in
                               zip(encoder.encode(reconstruction, layers), encoder.encode(content, layers)))
    torch.testing.assert_close(both.identity_pixel, expected_pixel, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(both.identity_feature, expected_feature, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both.content, paper.content, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both.style, paper.style, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both.total, paper.total + 50 * expected_pixel + expected_feature, rtol=1e-4, atol=1e-5)
    assert float(paper.identity_pixel) == 0.0 and float(paper.identity_feature) == 0.0


def test_style_identity_adds_the_style_reconstruction(data):
    """With identity_style the identity terms add the style image's own reconstruction error (SANet)."""
    encoder = load_encoder(data / "encoder.safetensors").network
    torch.manual_seed(4)
    decoder = AdaINDecoder()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    with torch.no_grad():
        content_only = compute_losses(encoder, decoder, content, style, LossWeights(identity_pixel=50.0,
                                                                                     identity_feature=1.0))
        both = compute_losses(encoder, decoder, content, style,
                              LossWeights(identity_pixel=50.0, identity_feature=1.0, identity_style=True))
        reconstruction = decoder(encoder.encode(style)[0])
        style_pixel = ((reconstruction - style) ** 2).mean()
        style_feature = sum(((a - b) ** 2).mean() for a, b in
                            zip(encoder.encode(reconstruction, layers), encoder.encode(style, layers)))
    assert float(style_pixel) > 0 and float(style_feature) > 0
    torch.testing.assert_close(both.identity_pixel, content_only.identity_pixel + style_pixel, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(both.identity_feature, content_only.identity_feature + style_feature,
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both.style, content_only.style, rtol=1e-4, atol=1e-6)


def test_identity_loss_teaches_reconstruction(data, tmp_path):
    """Trained on the identity terms alone, the decoder gives the content back better than at the start."""
    cfg = _config(data, tmp_path / "id.safetensors", max_iter=40, content_weight=0.0, style_weight=0.0,
                  identity_pixel_weight=50.0, identity_feature_weight=1.0, ema_decay=0.0, lr=1e-3)
    encoder = load_encoder(data / "encoder.safetensors").network
    files = scan_images(data / "content", 16)
    dataset = PairDataset(files, files, crop=32, resize=48, resize_mode="short")
    content = torch.stack([dataset[(i, i, i)][0] for i in range(4)])

    def error(decoder) -> float:
        with torch.no_grad():
            return float(((decoder(encoder.encode(content)[0]) - content) ** 2).mean())

    before = error(build_decoder(cfg)[0])
    train(cfg)
    records = _records(tmp_path / "id_run")
    assert all(abs(r["loss"] - (50 * r["identity_pixel_loss"] + r["identity_feature_loss"])) < 1e-3 * r["loss"]
               for r in records)
    assert error(load_decoder(cfg.out).network) < 0.5 * before


def test_identity_weights_are_checked(data, tmp_path):
    with pytest.raises(ValueError, match="--identity-pixel-weight"):
        _config(data, tmp_path / "x.safetensors", identity_pixel_weight=float("nan")).validate()
    with pytest.raises(ValueError, match="--identity-style .* give --identity-pixel-weight"):
        _config(data, tmp_path / "x.safetensors", identity_style=True).validate()
    _config(data, tmp_path / "x.safetensors", identity_style=True, identity_feature_weight=1.0).validate()


def test_a_skip_decoder_starts_from_a_relu4_1_decoder_and_trains(data, tmp_path):
    """--decoder skip with a relu4_1 warm start: the skips start at zero (the first output is the warm start's),
    training moves them, and the file loads as a skip decoder with its levels in the metadata."""
    torch.manual_seed(9)
    start = AdaINDecoder()
    save_safetensors(start.state_dict(), tmp_path / "start.safetensors", {"trained_steps": "40"})
    options = dict(warm_start=str(tmp_path / "start.safetensors"), decoder="skip", identity_pixel_weight=50.0,
                   identity_feature_weight=1.0, ema_decay=0.0, lr=1e-3)
    cfg = _config(data, tmp_path / "skip.safetensors", max_iter=0, **options)
    built = build_decoder(cfg)[0]
    assert isinstance(built, SkipDecoder)
    x, levels = torch.randn(1, 512, 4, 4), [torch.randn(1, 256, 8, 8), torch.randn(1, 128, 16, 16)]
    with torch.no_grad():
        assert torch.equal(built(x, *levels), start(x))
    result = train(replace(cfg, max_iter=3, run_dir=str(tmp_path / "skip_run")))
    loaded = load_decoder(result.out)
    assert isinstance(loaded.network, SkipDecoder)
    assert json.loads(loaded.metadata["levels"]) == ["relu4_1", "relu3_1", "relu2_1"]
    assert loaded.metadata["trained_steps"] == "43"
    assert all(conv.weight.abs().max() > 0 for conv in loaded.network.skip.values())
    with pytest.raises(ValueError, match="cannot start a --decoder relu4_1"):
        build_decoder(_config(data, tmp_path / "back.safetensors", warm_start=str(result.out)))


def test_skips_adds_relu1_1_to_a_trained_skip_decoder(data, tmp_path):
    """--skips relu3_1,relu2_1,relu1_1 warm-started from a two-skip decoder: the new skip starts at zero (same
    output), trains, and the file declares the level; a level the table lacks or the AdaIN layer is refused."""
    torch.manual_seed(10)
    start = SkipDecoder()
    save_safetensors(start.state_dict(), tmp_path / "start.safetensors", {"trained_steps": "40"})
    cfg = _config(data, tmp_path / "deep.safetensors", max_iter=0, warm_start=str(tmp_path / "start.safetensors"),
                  decoder="skip", skips="relu3_1, relu2_1, relu1_1", ema_decay=0.0, lr=1e-3)
    built = build_decoder(cfg)[0]
    x, levels = torch.randn(1, 512, 4, 4), [torch.randn(1, 256, 8, 8), torch.randn(1, 128, 16, 16)]
    with torch.no_grad():
        assert torch.equal(built(x, *levels, torch.randn(1, 64, 32, 32)), start(x, *levels))
    result = train(replace(cfg, max_iter=2, run_dir=str(tmp_path / "deep_run")))
    loaded = load_decoder(result.out)
    assert json.loads(loaded.metadata["levels"]) == ["relu4_1", "relu3_1", "relu2_1", "relu1_1"]
    assert loaded.network.skip["relu1_1"].weight.abs().max() > 0
    with pytest.raises(ValueError, match="not relu3_1,relu2_1"):
        resolve_config({**vars(_config(data, tmp_path / "deep.safetensors", decoder="skip")),
                        "run_dir": str(tmp_path / "deep_run"), "resume": "auto", "skips": "relu3_1,relu2_1"})
    for bad in ("relu4_1", "relu5_1", "relu2_1,relu2_1", ""):
        with pytest.raises(ValueError, match="--skips must name"):
            _config(data, tmp_path / "x.safetensors", decoder="skip", skips=bad).validate()
    with pytest.raises(ValueError, match="--skips names the levels of a skip decoder: give --decoder skip"):
        _config(data, tmp_path / "x.safetensors", skips="relu3_1,relu2_1").validate()


def test_skip_decoder_losses_adain_every_level(data):
    """The decoder is given each level AdaIN'd to the style's statistics there (and, for the identity terms,
    the content's own features); the content loss stays at relu4_1."""
    encoder = load_encoder(data / "encoder.safetensors").network
    seen: list[tuple[torch.Tensor, ...]] = []

    class Recorder(SkipDecoder):
        def forward(self, *inputs):
            seen.append(inputs)
            return super().forward(*inputs)

    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    compute_losses(encoder, Recorder(), content, style, LossWeights(identity_pixel=1.0), SkipDecoder.levels)
    (inputs,) = seen
    with torch.no_grad():
        content_feats = encoder.encode(content, SkipDecoder.levels)
        style_feats = encoder.encode(style, SkipDecoder.levels)
    for given, c, s in zip(inputs, content_feats, style_feats):
        assert given.shape[0] == 4  # stylized, then the reconstruction
        assert torch.allclose(given[2:], c)
        mean, std = mean_std(given[:2])
        assert torch.allclose(mean, mean_std(s)[0], atol=1e-4)


def test_skip_content_term_is_the_content_loss_at_each_skip_level(data, tmp_path):
    """--skip-content-weight adds, per skip level, the MSE between the re-encoded output and that level's AdaIN
    target, computed here independently; the paper's terms stay as they were. A relu4_1 decoder refuses it."""
    from adain_nodes.core.stats import adain
    encoder = load_encoder(data / "encoder.safetensors").network
    torch.manual_seed(8)
    decoder = SkipDecoder()
    for skip in decoder.skip.values():  # trained skips, not the zeros a new one starts with
        torch.nn.init.normal_(skip.weight, std=0.05)
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        paper = compute_losses(encoder, decoder, content, style, levels=decoder.levels)
        both = compute_losses(encoder, decoder, content, style,
                              LossWeights(skip_content={"relu3_1": 3.0, "relu2_1": 3.0}), decoder.levels)
        fine = compute_losses(encoder, decoder, content, style, LossWeights(skip_content={"relu2_1": 2.0}),
                              decoder.levels)
        targets = [adain(c, *mean_std(s)) for c, s in zip(encoder.encode(content, decoder.levels),
                                                           encoder.encode(style, decoder.levels))]
        out = dict(zip(decoder.levels, encoder.encode(decoder(*targets), decoder.levels)))
        per_level = {name: ((out[name] - t) ** 2).mean() for name, t in zip(decoder.levels[1:], targets[1:])}
    assert decoder.levels[1:] == ("relu3_1", "relu2_1")
    expected = 3 * (per_level["relu3_1"] + per_level["relu2_1"])
    torch.testing.assert_close(both.skip_content, expected, rtol=1e-4, atol=1e-6)
    assert float(expected) > 0 and float(paper.skip_content) == 0.0
    torch.testing.assert_close(both.content, paper.content, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both.total, paper.total + expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fine.skip_content, 2 * per_level["relu2_1"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fine.total, paper.total + 2 * per_level["relu2_1"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="--skip-content-weight weighs a content loss at a skip decoder"):
        _config(data, tmp_path / "x.safetensors", skip_content_weight=1.0).validate()
    _config(data, tmp_path / "x.safetensors", decoder="skip", skip_content_weight=1.0).validate()


def test_skip_content_weight_is_one_number_or_one_per_named_level(data, tmp_path):
    """A number weighs every skip level; LEVEL=W,... weighs the named ones (others 0). Levels the decoder does not
    take, repeated levels, negative or unreadable weights are refused with the option's name."""
    def weights(value, **extra):
        return _config(data, tmp_path / "x.safetensors", decoder="skip", skip_content_weight=value,
                       **extra).skip_content_weights

    assert weights(0.5) == {"relu3_1": 0.5, "relu2_1": 0.5}
    assert weights("0") == {} and weights("relu3_1=0") == {}
    assert weights("relu2_1=1, relu1_1=3", skips="relu3_1,relu2_1,relu1_1") == {"relu2_1": 1.0, "relu1_1": 3.0}
    for bad in ("relu1_1=3", "relu2_1=1,relu2_1=2", "relu2_1=-1", "relu2_1", "x", "nan", "relu2_1=inf"):
        with pytest.raises(ValueError, match="--skip-content-weight must be one number >= 0 or LEVEL=W"):
            weights(bad)


def test_shifted_view_moves_the_picture():
    image = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    view = shifted_view(image, 3, 5)
    assert view.shape == image.shape
    assert torch.equal(view[..., 3:, 5:], image[..., :-3, :-5])


def test_stability_term_is_the_shifted_output_difference(data):
    """The stability term (Wang et al. 2020) equals an independent computation: the output of the content moved by
    the step's random sub-grid shift plus noise, against the output moved alike; the paper's terms do not change."""
    from adain_nodes.core.stats import adain
    encoder = load_encoder(data / "encoder.safetensors").network
    torch.manual_seed(6)
    decoder = AdaINDecoder()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        paper = compute_losses(encoder, decoder, content, style)
        torch.manual_seed(11)
        both = compute_losses(encoder, decoder, content, style, LossWeights(stability=10.0))
        torch.manual_seed(11)
        dy, dx = (int(v) for v in torch.randint(1, 8, (2,)))
        view = shifted_view(content, dy, dx)
        view = (view + STABILITY_NOISE * torch.randn_like(view)).clamp(0, 1)
        style_stats = mean_std(encoder.encode(style)[0])
        moved = decoder(adain(encoder.encode(view)[0], *style_stats))
        output = decoder(adain(encoder.encode(content)[0], *style_stats))
        expected = ((moved[..., dy:, dx:] - output[..., :32 - dy, :32 - dx]) ** 2).mean()
    assert 1 <= dy < 8 and 1 <= dx < 8
    torch.testing.assert_close(both.stability, expected, rtol=1e-4, atol=1e-7)
    assert float(expected) > 0 and float(paper.stability) == 0.0
    torch.testing.assert_close(both.content, paper.content, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both.total, paper.total + 10 * expected, rtol=1e-4, atol=1e-5)


def test_stability_term_trains_the_decoder(data):
    """Its gradient reaches the decoder: a few steps on the term alone lower it."""
    encoder = load_encoder(data / "encoder.safetensors").network
    torch.manual_seed(7)
    decoder = AdaINDecoder()
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    weights = LossWeights(content=0.0, style=0.0, stability=1.0)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)

    def term() -> float:
        torch.manual_seed(1)
        with torch.no_grad():
            return float(compute_losses(encoder, decoder, content, style, weights).stability)

    before = term()
    for _ in range(5):
        torch.manual_seed(1)
        loss = compute_losses(encoder, decoder, content, style, weights).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert term() < 0.8 * before


def test_channel_spreads_are_the_std_over_styles_of_each_channel_std(data):
    encoder = load_encoder(data / "encoder.safetensors").network
    styles = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    spreads = channel_spreads(encoder, styles, chunk=2)
    for spread, feat in zip(spreads, encoder.double().encode(styles.double(), STYLE_LAYERS)):
        per_image = feat.flatten(2).var(dim=2).add(EPS).sqrt()
        torch.testing.assert_close(spread.double(), per_image.std(dim=0), rtol=1e-4, atol=1e-6)
    encoder.float()


def test_std_weights_balance_wide_channels_and_zero_is_the_paper():
    spreads = [torch.tensor([1.0, 2.0, 4.0, 1e-6])]
    assert torch.equal(std_error_weights(spreads, 0.0)[0], torch.ones(4))
    weights = std_error_weights(spreads, 1.0)[0].double()
    floored = torch.tensor([1.0, 2.0, 4.0, 0.05 * 1.0], dtype=torch.float64)  # median of the four is 1.0
    expected = floored.pow(-2) / floored.pow(-2).mean()
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=0)
    assert abs(float(weights.mean()) - 1.0) < 1e-6


def test_weighted_style_loss_weighs_each_channels_std_error():
    gen = torch.Generator().manual_seed(4)
    feats = [torch.rand(2, 3, 6, 6, generator=gen) * torch.tensor([1.0, 5.0, 0.2]).view(1, 3, 1, 1)]
    targets = [torch.rand(2, 3, 6, 6, generator=gen)]
    weights = [torch.tensor([0.5, 0.1, 2.4])]
    assert torch.allclose(style_loss(feats, targets, [torch.ones(3)]), style_loss(feats, targets))
    fm, fs = feats[0].mean((2, 3)), feats[0].var((2, 3)).add(EPS).sqrt()
    tm, ts = targets[0].mean((2, 3)), targets[0].var((2, 3)).add(EPS).sqrt()
    expected = (fm - tm).pow(2).mean() + ((fs - ts).pow(2) * weights[0]).mean()
    torch.testing.assert_close(style_loss(feats, targets, weights), expected)


def test_image_balanced_style_loss_has_the_mean_log_gradient_at_the_plain_scale():
    """Each image's gradient divided by its own loss: the gradient of mean(log L_i) times mean(L_i), computed here
    through autograd of the log, and the value of the plain mean."""
    gen = torch.Generator().manual_seed(5)
    feats = torch.rand(3, 4, 6, 6, generator=gen) * torch.tensor([1.0, 3.0, 9.0]).view(3, 1, 1, 1)
    targets = [torch.rand(3, 4, 6, 6, generator=gen)]
    target_stats = statistics(targets)
    first = feats.clone().requires_grad_(True)
    per_image = style_loss_per_image([first], target_stats)
    torch.testing.assert_close(per_image.mean(), style_loss([feats], targets))
    balanced = image_balanced(per_image)
    torch.testing.assert_close(balanced, per_image.mean())
    balanced.backward()
    second = feats.clone().requires_grad_(True)
    losses = style_loss_per_image([second], target_stats)
    (losses.log().mean() * losses.mean().detach()).backward()
    torch.testing.assert_close(first.grad, second.grad)
    plain = feats.clone().requires_grad_(True)
    style_loss_per_image([plain], target_stats).mean().backward()
    assert not torch.allclose(first.grad, plain.grad, rtol=1e-3)  # the images with large losses count less


def test_style_image_balance_trains(data, tmp_path):
    result = train(_config(data, tmp_path / "images.safetensors", max_iter=2, style_image_balance=True))
    assert result.iteration == 2


def test_style_std_balance_trains_and_is_checked(data, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="training"):
        train(_config(data, tmp_path / "balanced.safetensors", max_iter=2, style_std_balance=0.5))
    assert "style std weights from 5 style crops (balance 0.5)" in caplog.text
    with pytest.raises(ValueError, match="--style-std-balance must be a finite number >= 0"):
        train(_config(data, tmp_path / "bad.safetensors", max_iter=2, style_std_balance=float("nan")))


def test_blocks_join_a_trained_skip_decoder_and_learn_at_their_own_rate(data, tmp_path):
    """--blocks warm-started from a skip decoder without them: same output at the start; the new tensors get
    --new-lr-scale times the learning rate (so Adam's first step moves them that much more), the file declares the
    blocks, a resume keeps them, and a resume asking for other blocks is refused."""
    torch.manual_seed(11)
    start = SkipDecoder()
    save_safetensors(start.state_dict(), tmp_path / "start.safetensors", {"trained_steps": "40"})
    cfg = _config(data, tmp_path / "blocks.safetensors", max_iter=0, warm_start=str(tmp_path / "start.safetensors"),
                  decoder="skip", blocks="relu4_1,relu3_1", new_lr_scale=10.0, ema_decay=0.0, lr=1e-3,
                  run_dir=str(tmp_path / "blocks_run"))
    built = build_decoder(cfg)[0]
    x, levels = torch.randn(1, 512, 4, 4), [torch.randn(1, 256, 8, 8), torch.randn(1, 128, 16, 16)]
    with torch.no_grad():
        assert torch.equal(built(x, *levels), start(x, *levels))
    result = train(replace(cfg, max_iter=1))
    trained = load_decoder(result.out)
    assert json.loads(trained.metadata["blocks"]) == ["relu4_1", "relu3_1"]
    after = trained.network.state_dict()
    # Adam's first step moves every weight with a gradient by about its learning rate
    old_step = (after["5.weight"] - start.state_dict()["5.weight"]).abs().max().item()
    new_step = after["block.relu4_1.4.weight"].abs().max().item()
    assert 0.9e-3 < old_step < 1.1e-3 and 0.9e-2 < new_step < 1.1e-2
    checkpoint = tmp_path / "blocks_run" / "checkpoint.pt"
    began = torch.load(checkpoint, weights_only=True)
    assert began["new_parameters"] == sorted(n for n, _ in built.named_parameters() if n.startswith("block."))
    # the warm-start file replaced by the run's own result (a relay committing its default): the run still resumes
    # with the groups it began with, taken from its checkpoint
    (tmp_path / "start.safetensors").write_bytes(Path(result.out).read_bytes())
    resumed = train(resolve_config({**vars(replace(cfg, max_iter=2)), "resume": "auto"}))
    assert resumed.start_iteration == 1 and load_decoder(resumed.out).network.blocks == ("relu4_1", "relu3_1")
    assert [g["lr_scale"] for g in torch.load(checkpoint, weights_only=True)["optimizer"]["param_groups"]] == [1, 10]
    # a checkpoint from before the record cannot tell: the error says the warm-start file is not the one it began with
    began.pop("new_parameters")
    torch.save(began, checkpoint)
    with pytest.raises(ValueError, match="is not the file the run began with"):
        train(resolve_config({**vars(replace(cfg, max_iter=3)), "resume": "auto"}))
    with pytest.raises(ValueError, match="blocks relu4_1,relu3_1, not relu4_1"):
        resolve_config({**vars(cfg), "resume": "auto", "blocks": "relu4_1"})
    for bad in ("relu1_1", "relu5_1", "relu3_1,relu3_1"):
        with pytest.raises(ValueError, match="--blocks must name"):
            _config(data, tmp_path / "x.safetensors", decoder="skip", blocks=bad).validate()
    with pytest.raises(ValueError, match="--blocks adds residual blocks"):
        _config(data, tmp_path / "x.safetensors", blocks="relu4_1").validate()
    with pytest.raises(ValueError, match="give its blocks with --blocks"):  # never drop trained blocks silently
        build_decoder(_config(data, tmp_path / "x.safetensors", decoder="skip", warm_start=str(result.out)))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channels_last slice"])
def test_mse_is_torchs_mse_in_any_memory_layout(layout):
    """The losses' mse walks channels_last maps in their memory order: the value and the gradient of torch's
    mse_loss on contiguous copies, for whole maps and for the stability term's shifted slices."""
    from training.losses import mse
    torch.manual_seed(12)
    a, b = torch.randn(2, 8, 10, 12, dtype=torch.float64), torch.randn(2, 8, 10, 12, dtype=torch.float64)
    if layout != "contiguous":
        a, b = (t.contiguous(memory_format=torch.channels_last) for t in (a, b))
    a.requires_grad_(True)
    x, y = (a[..., 1:, 2:], b[..., :-1, :-2]) if layout.endswith("slice") else (a, b)
    expected_a = a.detach().clone().contiguous().requires_grad_(True)
    ex, ey = (expected_a[..., 1:, 2:], b.contiguous()[..., :-1, :-2]) if layout.endswith("slice") \
        else (expected_a, b.contiguous())
    value, expected = mse(x, y), torch.nn.functional.mse_loss(ex.float(), ey.float())
    value.backward()
    expected.backward()
    assert torch.allclose(value, expected, rtol=1e-6) and value.dtype == torch.float32
    assert torch.allclose(a.grad, expected_a.grad, rtol=1e-5, atol=1e-9)


def _smooth(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)


def test_teacher_term_matches_the_features_of_the_products_style_boost(data, tmp_path):
    """--teacher: the drawing the output must match is the teacher's picture under ``pipeline.stylize(boost=)``
    (two transfers, in 0..1), and the term is the feature MSE at every style layer between the output and that
    picture, weighted into the total beside the paper's terms."""
    from adain_nodes import pipeline
    from adain_nodes.host.runtime import StandaloneRuntime
    from adain_nodes.tiling import NO_TILING
    from conftest import random_skip_decoder
    from training.losses import boosted_drawing, feature_distance

    save_safetensors(random_skip_decoder(3).state_dict(), tmp_path / "teacher.safetensors", {})
    encoder, teacher = load_encoder(data / "encoder.safetensors"), load_decoder(tmp_path / "teacher.safetensors")
    encoder.precision = teacher.precision = "fp32"
    content, style = _smooth(2, 1), _smooth(2, 2)
    product = pipeline.stylize(encoder, teacher, content, style, StandaloneRuntime(torch.device("cpu")), 1.0,
                               tiling=NO_TILING, boost=0.5)
    levels = teacher.network.levels
    net = encoder.network
    content_at = dict(zip(STYLE_LAYERS, net.encode(content, STYLE_LAYERS)))
    style_stats = dict(zip(STYLE_LAYERS, statistics(net.encode(style, STYLE_LAYERS))))
    drawn = boosted_drawing(net, teacher.network, content_at, style_stats, levels, 0.5)
    assert torch.allclose(drawn, product, atol=1e-4)
    once = pipeline.stylize(encoder, teacher, content, style, StandaloneRuntime(torch.device("cpu")), 1.0,
                            tiling=NO_TILING)
    assert (drawn - once).abs().max() > 0.01  # the boost changed the picture, so the check above could fail

    student = random_skip_decoder(4)
    with torch.no_grad():
        paper = compute_losses(net, student, content, style, levels=levels)
        taught = compute_losses(net, student, content, style, LossWeights(teacher=2.0, teacher_boost=0.5), levels,
                                teacher=teacher.network)
    expected = feature_distance(net.encode(taught.output, STYLE_LAYERS), net.encode(drawn, STYLE_LAYERS))
    assert float(paper.teacher) == 0.0
    assert float(taught.teacher) == pytest.approx(float(expected), rel=1e-4) and float(expected) > 0
    assert float(taught.total) == pytest.approx(float(paper.total) + 2.0 * float(expected), rel=1e-5)


def test_teacher_options_are_checked_and_recorded(data, tmp_path):
    """--teacher and --teacher-weight go together, the boost lies in style_boost's range, a teacher of other levels
    is refused before any work; a run records the term in its log and the teacher's file and hash in its output."""
    from conftest import random_skip_decoder

    save_safetensors(random_skip_decoder(3).state_dict(), tmp_path / "teacher.safetensors", {})
    save_safetensors(AdaINDecoder().state_dict(), tmp_path / "relu4_1.safetensors", {})
    teacher = str(tmp_path / "teacher.safetensors")
    for options, message in ((dict(teacher=teacher), "--teacher and --teacher-weight go together"),
                             (dict(teacher_weight=1.0), "--teacher and --teacher-weight go together"),
                             (dict(teacher=teacher, teacher_weight=1.0, teacher_boost=1.5), "--teacher-boost must"),
                             (dict(teacher=teacher, teacher_weight=-1.0), "--teacher-weight must be")):
        with pytest.raises(ValueError, match=message):
            _config(data, tmp_path / "x.safetensors", decoder="skip", **options).validate()
    with pytest.raises(ValueError, match="--teacher .*relu4_1.safetensors is a decoder of"):
        train(_config(data, tmp_path / "y.safetensors", decoder="skip", teacher=str(tmp_path / "relu4_1.safetensors"),
                      teacher_weight=1.0, max_iter=1))
    with pytest.raises(ValueError, match="--teacher .*missing.safetensors: no such weight file"):
        train(_config(data, tmp_path / "z.safetensors", decoder="skip", teacher=str(tmp_path / "missing.safetensors"),
                      teacher_weight=1.0, max_iter=1))
    assert not (tmp_path / "y_run").exists() and not (tmp_path / "z_run").exists()
    result = train(_config(data, tmp_path / "t.safetensors", decoder="skip", teacher=teacher, teacher_weight=1.0,
                           max_iter=2, run_dir=str(tmp_path / "t_run")))
    assert all(r["teacher_loss"] > 0 for r in _records(tmp_path / "t_run"))
    meta = load_decoder(result.out).metadata
    assert meta["teacher"] == "teacher.safetensors" and meta["teacher_sha256"] == file_sha256(teacher)
