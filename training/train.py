"""Train an AdaIN decoder: ``python -m training.train --content DIR --style DIR --encoder FILE --out FILE``.

The paper's recipe with the reference port's defaults (see ``config.py``). Runs on one CPU or
GPU, or on many through ``torchrun`` (DistributedDataParallel: NCCL on GPUs, gloo on CPUs).
Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and the decoder, and exits;
``--resume`` then continues bit for bit where it stopped (on GPUs with ``--deterministic``).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from adain_nodes.core.layers import SKIP_LAYERS
from adain_nodes.file_walk import is_regular_file
from adain_nodes.models.networks import DECODER_KINDS, SkipDecoder
from adain_nodes.models.precision import resolve_precision
from adain_nodes.models.weights import file_sha256, load_decoder, load_encoder

from .checkpoint import (CHECKPOINT_NAME, load_checkpoint, remove_run_temporaries, save_checkpoint, save_decoder,
                         set_rng_states)
from .config import TrainConfig, parse_levels, parse_overrides
from .data import PairDataset, PairSampler, check_decodable, scan_images
from .determinism import deterministic_kernels
from .losses import channel_spreads, compute_losses, std_error_weights
from .monitor import LossLog, Progress, plot_losses, sample_grid, save_png

log = logging.getLogger("training")

# In DDP the ranks agree on stopping through a collective; doing it every step would serialise GPUs.
DIST_STOP_CHECK_EVERY = 10


@dataclass
class TrainResult:
    iteration: int
    start_iteration: int
    stopped_early: bool
    losses: dict[str, float]
    seconds: float
    steady_iterations_per_s: float  # after the first two steps (warm-up, worker start)
    out: Path
    checkpoint: Path
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # where collectives run: NCCL needs CUDA tensors

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Distributed:
    """Join the torchrun process group when launched by torchrun with more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, device)


def pick_device(name: str, ddp: Distributed) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if device.index is None:
            count = torch.cuda.device_count()
            if ddp.local_rank >= count:
                raise ValueError(f"process {ddp.local_rank} on this machine has no GPU of its own ({count} visible): "
                                 f"start torchrun with --nproc_per_node {count} or fewer, or train on the CPU with "
                                 "--device cpu")
            device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None for fp32; what ``auto`` means is decided with inference's (``resolve_precision``)."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs CUDA; use bf16 on the CPU")
    dtype = resolve_precision(precision, device, training=True)
    return None if dtype == torch.float32 else dtype


class StopRequest:
    """SIGINT/SIGTERM set a flag so the loop can checkpoint; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: stopping after this iteration and writing a checkpoint "
                    "(send it again to abort without one)", signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ignore_stop_signals_in_worker(_worker_id: int) -> None:
    """Workers must outlive a Ctrl-C or SIGTERM to the process group (torchrun and container stops send
    one) so the main process can finish its checkpoint; it shuts them down itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(cfg: TrainConfig, ddp: Distributed, start_step: int, pin: bool) -> tuple[DataLoader, PairSampler]:
    if cfg.batch_size % ddp.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must be divisible by the {ddp.world_size} processes")
    local_batch = cfg.batch_size // ddp.world_size
    content = scan_images(cfg.content, cfg.min_image_size)
    style = scan_images(cfg.style, cfg.min_image_size)
    check_decodable(content, cfg.content)
    check_decodable(style, cfg.style)
    dataset = PairDataset(content, style, cfg.crop, cfg.resize, cfg.resize_mode, cfg.seed, cfg.min_scale,
                          cfg.max_scale)
    sampler = PairSampler(len(content), len(style), local_batch, cfg.seed, start_step, ddp.rank, ddp.world_size)
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, num_workers=cfg.workers,
                        pin_memory=pin, persistent_workers=False, drop_last=True,
                        worker_init_fn=_ignore_stop_signals_in_worker if cfg.workers else None)
    return loader, sampler


SPREAD_SAMPLE = 64  # style crops that estimate each channel's typical spread for --style-std-balance


def style_std_weights(cfg: TrainConfig, encoder: nn.Module, dataset: PairDataset,
                      device: torch.device) -> list[Tensor] | None:
    """The style loss's per-channel std weights (None without --style-std-balance), from the first SPREAD_SAMPLE
    style crops of the data stream: the same on every rank and on resume, no file to keep."""
    if not cfg.style_std_balance:
        return None
    count = min(SPREAD_SAMPLE, len(dataset.style))
    styles = torch.stack([dataset[(position, 0, position)][1] for position in range(count)]).to(device)
    weights = std_error_weights(channel_spreads(encoder, styles), cfg.style_std_balance)
    log.info("style std weights from %d style crops (balance %g): largest/smallest per layer %s", count,
             cfg.style_std_balance, ", ".join(f"{w.max() / w.min():.0f}" for w in weights))
    return weights


def data_description(cfg: TrainConfig, dataset: PairDataset) -> str:
    """What the decoder saw, in words, for its metadata (folders as given on the command line)."""
    resize = {"square": f"resized to {cfg.resize}x{cfg.resize}", "short": f"short side {cfg.resize}",
              "none": "not resized"}[cfg.resize_mode]
    return (f"{len(dataset.content)} content images ({cfg.content}) and {len(dataset.style)} style images "
            f"({cfg.style}), {resize}, " + (f"zoomed by a random factor in [{cfg.min_scale:g}, {cfg.max_scale:g}], "
                                             if (cfg.min_scale, cfg.max_scale) != (1, 1) else "")
            + f"random {cfg.crop} px crops")


def build_decoder(cfg: TrainConfig) -> tuple[nn.Module, dict[str, Any], set[str]]:
    """A fresh decoder (seeded), or one warm-started from a decoder file: of the same kind, or a relu4_1
    decoder as the trunk of a skip decoder (whose zero skips and blocks then decode exactly as it does).
    Also the names of the parameters the warm-start file lacks (none without one)."""
    torch.manual_seed(cfg.seed)
    kind = DECODER_KINDS[cfg.decoder]
    decoder = kind(cfg.skip_levels, cfg.block_levels) if kind is SkipDecoder else kind()
    info: dict[str, Any] = {}
    new: set[str] = set()
    if cfg.warm_start:
        source = load_decoder(cfg.warm_start)
        if not set(source.network.levels) <= set(decoder.levels):
            raise ValueError(f"--warm-start {cfg.warm_start} is a decoder of {source.network.levels}, which "
                             f"cannot start a --decoder {cfg.decoder} (of {decoder.levels})")
        missing, unexpected = decoder.load_state_dict(source.network.state_dict(), strict=False)
        if any(not key.startswith(("skip.", "block.")) for key in missing):
            raise ValueError(f"--warm-start {cfg.warm_start} lacks the decoder's tensors {missing}")
        if unexpected:
            raise ValueError(f"--warm-start {cfg.warm_start} has tensors a --decoder {cfg.decoder} with these --skips "
                             f"and --blocks lacks ({unexpected}): give its blocks with --blocks")
        new = set(missing)
        steps = int(source.metadata.get("trained_steps", 0) or 0)
        info = {"warm_start": Path(cfg.warm_start).name, "warm_start_sha256": file_sha256(cfg.warm_start),
                "warm_start_steps": steps}
        log.info("warm start from %s (%d steps trained before)", cfg.warm_start, steps)
    return decoder.train().requires_grad_(True), info, new


def build_teacher(cfg: TrainConfig, levels: tuple[str, ...]) -> tuple[nn.Module | None, dict[str, Any]]:
    """The frozen --teacher decoder, which must take the trained decoder's levels; and what the output file
    records of it (None and nothing without --teacher)."""
    if not cfg.teacher:
        return None, {}
    teacher = load_decoder(cfg.teacher)
    if tuple(teacher.network.levels) != tuple(levels):
        raise ValueError(f"--teacher {cfg.teacher} is a decoder of {teacher.network.levels}; the trained decoder takes "
                         f"{levels}: give a teacher of the same levels (--decoder, --skips)")
    log.info("distilling %s with style_boost %g (weight %g)", cfg.teacher, cfg.teacher_boost, cfg.teacher_weight)
    return (teacher.network.eval().requires_grad_(False),
            {"teacher": Path(cfg.teacher).name, "teacher_sha256": file_sha256(cfg.teacher)})


def build_optimizer(cfg: TrainConfig, decoder: nn.Module, new: set[str]) -> torch.optim.Optimizer:
    """Adam; the parameters in ``new`` (absent from the warm-start file) learn ``--new-lr-scale`` times faster, in a
    group of their own (only then: a checkpoint of one group, from before the option, still resumes)."""
    if cfg.new_lr_scale == 1.0:
        new = set()
    groups = [{"params": [p for n, p in decoder.named_parameters() if (n in new) == is_new], "lr_scale": scale}
              for is_new, scale in ((False, 1.0), (True, cfg.new_lr_scale))]
    return torch.optim.Adam([group for group in groups if group["params"]], lr=cfg.lr)


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def check_inputs(cfg: TrainConfig) -> None:
    """The files and folders the options name, checked before any work (a ValueError naming the option):
    what would otherwise fail minutes in, or quietly train on the run's own sample grids."""
    for option, folder in (("--content", cfg.content), ("--style", cfg.style)):
        if not Path(folder).is_dir():
            raise ValueError(f"{option} {folder}: no such image folder")
        if _inside(cfg.run_path, folder):
            raise ValueError(f"the run folder {cfg.run_path} is inside {option} {folder}: the trainer would train on "
                             "its own sample grids; give --run-dir (or --out) outside the image folders")
    for option, name in (("--encoder", cfg.encoder), ("--warm-start", cfg.warm_start), ("--teacher", cfg.teacher)):
        if name and not is_regular_file(name):
            raise ValueError(f"{option} {name}: no such weight file")
    if cfg.run_path.exists() and not cfg.run_path.is_dir():
        raise ValueError(f"the run folder {cfg.run_path} exists and is not a folder; give another --run-dir")
    out = Path(cfg.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a .safetensors file name")


def checkpoint_path(cfg: TrainConfig) -> Path:
    if cfg.resume and cfg.resume != "auto":
        return Path(cfg.resume)
    return cfg.run_path / CHECKPOINT_NAME


def _mean_over_ranks(values: dict[str, float], ddp: Distributed) -> dict[str, float]:
    if not ddp.enabled:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=ddp.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / ddp.world_size).cpu().tolist()))


def _stop_agreed(local: bool, ddp: Distributed, iteration: int, force: bool) -> bool:
    if not ddp.enabled:
        return local
    if not force and iteration % DIST_STOP_CHECK_EVERY:
        return False
    flag = torch.tensor([1.0 if local else 0.0], device=ddp.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def ema_decay(decay: float, trained_steps: int) -> float:
    """Ramped so the average follows a fresh decoder closely at first (short runs are not stuck near init).

    The ramp counts the decoder's steps, warm-start steps included: a trained decoder has no init to
    forget, and a restarted short average follows the raw weights, which swing from step to step (a
    warm start from the shipped decoder failed the Starry Night test within 100 steps of its own recipe).
    """
    return min(decay, (1.0 + trained_steps) / (10.0 + trained_steps))


def learning_rate(cfg: TrainConfig, iteration: int) -> float:
    """The reference port's inverse decay, ``lr / (1 + decay * iteration)``, after an optional linear warm-up and,
    over the last ``cooldown_iters`` iterations, times a linear fall towards zero (the last one takes 1/cooldown)."""
    warmup = min(1.0, (iteration + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    cooldown = min(1.0, (cfg.max_iter - iteration) / cfg.cooldown_iters) if cfg.cooldown_iters > 0 else 1.0
    return warmup * cooldown * cfg.lr / (1.0 + cfg.lr_decay * iteration)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) training as configured; returns where it stopped and the last losses."""
    with deterministic_kernels(cfg.deterministic):
        return _train(cfg)


def _train(cfg: TrainConfig) -> TrainResult:
    cfg.validate()
    check_inputs(cfg)
    wants_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    ddp = setup_distributed("cuda" if wants_cuda else "cpu")
    device = pick_device(cfg.device, ddp)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    amp_dtype = autocast_dtype(cfg.precision, device)
    channels_last = cfg.channels_last is not False  # None: a checkpoint's options from before it was on everywhere
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    run_dir = cfg.run_path
    ckpt_file = checkpoint_path(cfg)

    encoder = load_encoder(cfg.encoder).network.to(device, memory_format=memory_format)
    encoder_sha = file_sha256(cfg.encoder)
    decoder, warm_info, new_parameters = build_decoder(cfg)
    decoder.to(device, memory_format=memory_format)
    teacher, teacher_info = build_teacher(cfg, decoder.levels)
    if teacher is not None:
        teacher.to(device, memory_format=memory_format)
    state: dict[str, Any] | None = load_checkpoint(ckpt_file) if cfg.resume else None
    if state is not None and "new_parameters" in state:
        # the groups the run began with: the warm-start file may have been replaced since (a relay's own result)
        new_parameters = set(state["new_parameters"])
    optimizer = build_optimizer(cfg, decoder, new_parameters)
    lr_scales = [group["lr_scale"] for group in optimizer.param_groups]  # a resumed optimizer keeps its saved groups
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start = 0
    # the averaged weights smooth the step-to-step swings between content and style that a single
    # snapshot of a small-batch run lands on; they are what the output file holds
    ema = copy.deepcopy(decoder).eval().requires_grad_(False) if cfg.ema_decay else None
    if state is not None:
        try:
            decoder.load_state_dict(state["decoder"])
            if ema is not None:
                if "ema" not in state:
                    log.info("the checkpoint has no weight average: starting it from the checkpoint's decoder")
                ema.load_state_dict(state.get("ema", state["decoder"]))
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            began_with = state.get("warm_info", {}).get("warm_start_sha256")
            changed = (f"; --warm-start {cfg.warm_start} is not the file the run began with (its sha256 differs from "
                       "the checkpoint's record): give that file" if began_with and began_with !=
                       warm_info.get("warm_start_sha256") else "")
            raise ValueError(f"{ckpt_file}: its decoder or optimizer does not fit a --decoder {cfg.decoder} decoder "
                             f"({str(exc).splitlines()[0][:200]}){changed}; resume with the checkpoint's own options, "
                             "or start a new run (another --run-dir)") from None
        if "scaler" in state and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        warm_info = state.get("warm_info", warm_info)
        start = int(state["iteration"])
        if state["data"]["global_batch"] != cfg.batch_size or state["data"]["seed"] != cfg.seed:
            log.warning("batch size or seed differ from the checkpoint's: the data stream will not continue "
                        "exactly as it would have")
        log.info("resuming from %s at iteration %d", ckpt_file, start)

    model: nn.Module = decoder
    if ddp.enabled:
        model = DistributedDataParallel(decoder, device_ids=[device.index] if device.type == "cuda" else None)
    loader, sampler = make_loader(cfg, ddp, start, pin=device.type == "cuda")
    std_weights = style_std_weights(cfg, encoder, loader.dataset, device)
    if ddp.main:  # only now, when every input has been checked: nothing is created for a run that cannot start
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_run_temporaries(run_dir, Path(cfg.out))
    if state is not None:
        set_rng_states(state["rng"])  # last, so nothing above consumes randomness after restoring

    steps_before = int(warm_info.get("warm_start_steps", 0))  # trained_steps = steps_before + iteration
    loss_log = LossLog(run_dir, resume_iteration=start if state is not None else None)
    progress = Progress(cfg.max_iter, start, live=cfg.progress if ddp.main else False)
    meta_base = {"encoder": Path(cfg.encoder).name, "encoder_sha256": encoder_sha,
                 "training_options": cfg.to_json(), "precision": str(amp_dtype or torch.float32),
                 "world_size": ddp.world_size, "trainer": "adain-nodes training.train", **warm_info, **teacher_info,
                 "data": data_description(cfg, loader.dataset)}

    # the last checkpoint known good: the one resumed from, then each one written
    saved: dict[str, Any] = {"iteration": start, "path": ckpt_file} if state is not None else {}

    def intact() -> str:
        if not saved:
            return "no checkpoint was written"
        return f"the last checkpoint, of iteration {saved['iteration']} in {saved['path']}, is intact"

    def check_finite(iteration: int) -> None:
        """Before every write (on every rank: they hold the same weights): NaN weights are never written."""
        modules = [decoder] + ([ema] if ema is not None else [])
        if not all(torch.isfinite(p).all() for module in modules for p in module.parameters()):
            raise FloatingPointError(f"the decoder's weights became NaN or infinite by iteration {iteration}; "
                                     f"nothing was written ({intact()}). Lower --lr or use --precision fp32")

    def write_outputs(iteration: int, final: bool) -> None:
        check_finite(iteration)
        if not ddp.main:
            return
        # the loss records first: a kill after the checkpoint would otherwise leave a log that ends before
        # it, and the resumed run could never fill the gap (resume drops the records past the checkpoint)
        loss_log.flush()
        extra = {"warm_info": warm_info, "new_parameters": sorted(new_parameters)}
        if scaler.is_enabled():
            extra["scaler"] = scaler.state_dict()
        if ema is not None:
            extra["ema"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
        save_checkpoint(run_dir / CHECKPOINT_NAME, decoder, optimizer, iteration, sampler.state(iteration),
                        cfg.to_json(), extra)
        recent = loss_log.records[-10:]
        final_losses = {k: sum(r[k] for r in recent) / len(recent)
                        for k in ("loss", "content_loss", "style_loss")} if recent else {}
        save_decoder(Path(cfg.out), ema if ema is not None else decoder, {**meta_base, "iterations": iteration,
                                              "trained_steps": steps_before + iteration,
                                              "final_losses": final_losses, "complete": final and
                                              iteration >= cfg.max_iter})
        saved.update(iteration=iteration, path=run_dir / CHECKPOINT_NAME)
        if final:
            plot_losses(loss_log.records, run_dir / "loss_plot.png")

    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    loss_weights = cfg.loss_weights  # once: --skip-content-weight is parsed, not read, each time it is asked for
    iteration, stopped, last = start, False, {}
    t_start = time.perf_counter()
    t_steady, steady_from = t_start, start
    batches: Iterator = iter(loader)
    with StopRequest() as stop:
        while iteration < cfg.max_iter:
            if _stop_agreed(stop.requested, ddp, iteration, force=False):
                stopped = True
                break
            content, style = next(batches)
            content = content.to(device, non_blocking=True, memory_format=memory_format)
            style = style.to(device, non_blocking=True, memory_format=memory_format)
            lr = learning_rate(cfg, iteration)
            for group, scale in zip(optimizer.param_groups, lr_scales):
                group["lr"] = lr * scale
            with autocast:
                losses = compute_losses(encoder, model, content, style, loss_weights, decoder.levels,
                                        std_weights, teacher)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses.total).backward()
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                decay = ema_decay(cfg.ema_decay, steps_before + iteration)
                with torch.no_grad():
                    for averaged, current in zip(ema.parameters(), decoder.parameters()):
                        averaged.lerp_(current, 1.0 - decay)
            iteration += 1
            if iteration == start + 2:
                t_steady, steady_from = time.perf_counter(), iteration

            if iteration % cfg.log_every == 0 or iteration == cfg.max_iter:
                values = {"loss": losses.total.item(), "content_loss": losses.content.item(),
                          "style_loss": losses.style.item()}
                if cfg.tv_weight:
                    values["tv_loss"] = losses.tv.item()
                if cfg.colour_weight:
                    values["colour_loss"] = losses.colour.item()
                if cfg.stability_weight:
                    values["stability_loss"] = losses.stability.item()
                if loss_weights.skip_content:
                    values["skip_content_loss"] = losses.skip_content.item()
                if loss_weights.teacher:
                    values["teacher_loss"] = losses.teacher.item()
                if loss_weights.identity:
                    values["identity_pixel_loss"] = losses.identity_pixel.item()
                    values["identity_feature_loss"] = losses.identity_feature.item()
                last = _mean_over_ranks(values, ddp)
                if not all(math.isfinite(v) for v in last.values()):
                    raise FloatingPointError(f"loss became {last} at iteration {iteration}; lower --lr or use "
                                             f"--precision fp32 ({intact()})")
                if ddp.main:
                    progress.update(iteration, last, cfg.batch_size)
                    loss_log.add({"iteration": iteration, **last, "lr": lr,
                                  "images_per_s": round(progress.rate(iteration, cfg.batch_size), 3),
                                  "elapsed_s": round(time.perf_counter() - t_start, 2)})
            if ddp.main and cfg.sample_every and iteration % cfg.sample_every == 0:
                save_png(sample_grid(content, style, losses.output), run_dir / "samples" / f"iter_{iteration:07d}.png")
            if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0 and iteration < cfg.max_iter:
                write_outputs(iteration, final=False)
                if ddp.enabled:
                    dist.barrier()
        else:
            stopped = _stop_agreed(stop.requested, ddp, iteration, force=True) and iteration < cfg.max_iter
        t_end = time.perf_counter()
        progress.close()
        del batches  # shut the workers down before writing
        write_outputs(iteration, final=True)
        if ddp.enabled:
            dist.barrier()
    seconds = time.perf_counter() - t_start
    steady = (iteration - steady_from) / (t_end - t_steady) if iteration > steady_from else 0.0
    if ddp.main:
        log.info("%s at iteration %d after %.1f s; decoder %s, checkpoint %s%s",
                 "stopped" if stopped else "finished", iteration, seconds, cfg.out, run_dir / CHECKPOINT_NAME,
                 " (continue with --resume)" if stopped else "")
    return TrainResult(iteration, start, stopped, last, seconds, steady, Path(cfg.out), run_dir / CHECKPOINT_NAME)


def resolve_config(overrides: dict[str, Any]) -> TrainConfig:
    """Command-line options; with ``--resume``, the checkpoint's options with the given ones on top."""
    cfg = TrainConfig(**overrides)
    if not cfg.resume:
        return cfg
    path = checkpoint_path(cfg)
    saved = load_checkpoint(path)["config"]
    unknown = set(saved) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{path}: its options {sorted(unknown)} are not this trainer's; start a new run")
    kind = saved.get("decoder", "relu4_1")
    if overrides.get("decoder", kind) != kind:
        raise ValueError(f"{path} trains a {kind} decoder, not a {overrides['decoder']} one: resume without "
                         "--decoder, or start a new run (another --run-dir) for the other kind")
    saved_skips = parse_levels(saved.get("skips"), SKIP_LAYERS)
    if "skips" in overrides and parse_levels(overrides["skips"], SKIP_LAYERS) != saved_skips:
        raise ValueError(f"{path} trains a decoder with skips {','.join(saved_skips)}, not {overrides['skips']}: "
                         "resume without --skips, or warm-start a new run (another --run-dir) from its decoder")
    saved_blocks = parse_levels(saved.get("blocks"))
    if "blocks" in overrides and parse_levels(overrides["blocks"]) != saved_blocks:
        raise ValueError(f"{path} trains a decoder with blocks {','.join(saved_blocks) or 'none'}, not "
                         f"{overrides['blocks']}: resume without --blocks, or warm-start a new run (another --run-dir) "
                         "from its decoder")
    changed = {k: (saved.get(k), v) for k, v in overrides.items() if k != "resume" and saved.get(k) != v}
    if changed:
        log.info("resume: options changed from the checkpoint: %s", changed)
    return TrainConfig(**{**saved, **overrides})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = resolve_config(parse_overrides(argv, __doc__))
        cfg.validate()
        check_inputs(cfg)
    except (ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    try:
        train(cfg)
    except (ValueError, OSError, FloatingPointError) as exc:  # bad files found on loading, a full disk, NaNs
        log.error("%s", exc)
        return 1
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
