"""Training options as one dataclass (nanoGPT style); the command line is generated from it.

Defaults follow the reference PyTorch port (naoto0804/pytorch-AdaIN ``train.py``): images resized
to 512x512, random 256 crops, batch 8, Adam 1e-4 with inverse decay 5e-5, style weight 10. Three
defaults won against them in measured runs (README): the weight average, bf16 where the CPU has it,
and the random zoom-out before the crop.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, get_type_hints

from adain_nodes.core.layers import ADAIN_LAYER, ENCODER_LAYERS, GRID, MIN_SIZE, SKIP_LAYERS
from adain_nodes.models.networks import DECODER_KINDS
from adain_nodes.models.precision import PRECISIONS

from .losses import LossWeights

RESIZE_MODES = ("square", "short", "none")


def parse_levels(text: Optional[str], default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list of layer names (``--skips``, ``--blocks``); not given (None), ``default``."""
    if text is None:
        return default
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    # data and files
    content: Optional[str] = _opt(None, "folder of content images (searched recursively)")
    style: Optional[str] = _opt(None, "folder of style images (searched recursively)")
    encoder: Optional[str] = _opt(None, "encoder weight file (vgg_normalised.pth or .safetensors)")
    out: Optional[str] = _opt(None, "output decoder .safetensors (also rewritten at every checkpoint)")
    run_dir: Optional[str] = _opt(None, "checkpoint, logs, samples and plot; default: <out without suffix>_run")
    warm_start: Optional[str] = _opt(None, "initialise the decoder from this decoder file (a relu4_1 decoder can "
                                     "start a skip decoder: its skips start at zero)")
    decoder: str = _opt("relu4_1", "relu4_1: the paper's decoder; skip: also takes AdaIN'd relu3_1 and relu2_1 "
                        "features, for the content's structure", choices=tuple(DECODER_KINDS))
    skips: Optional[str] = _opt(None, "with --decoder skip: the shallower encoder layers it also takes, comma "
                                f"separated (not given: {','.join(SKIP_LAYERS)}; relu3_1,relu2_1,relu1_1 adds the "
                                "finest edges)")
    blocks: Optional[str] = _opt(None, "with --decoder skip: levels at whose grid a residual block adds capacity, "
                                 "comma separated (relu4_1,relu3_1: two blocks at 1/8 and 1/4 resolution, each "
                                 "starting as the identity); not given: none")
    # optimisation (reference port defaults)
    max_iter: int = _opt(160_000, "training iterations (total, counting resumed ones)")
    batch_size: int = _opt(8, "global batch size (split over DDP processes)")
    lr: float = _opt(1e-4, "Adam learning rate")
    lr_decay: float = _opt(5e-5, "inverse decay: lr / (1 + lr_decay * iteration)")
    new_lr_scale: float = _opt(1.0, "learning-rate multiplier for the tensors a --warm-start file lacks (new skips "
                               "or blocks start at zero and engage slowly at the trained tensors' rate)")
    warmup_iters: int = _opt(0, "linear learning-rate warm-up over this many iterations; with --warm-start it "
                             "avoids the full-size first steps of fresh Adam moments disturbing a trained decoder")
    cooldown_iters: int = _opt(0, "the last this many iterations before --max-iter take a learning rate falling "
                               "linearly towards zero (warmup-stable-decay: resume a relay's checkpoint with a "
                               "--max-iter this far ahead to get its annealed weights); 0: no cooldown")
    ema_decay: float = _opt(0.999, "the output decoder is an exponential moving average of the weights with this "
                            "decay (ramped up as min(decay, (1+i)/(10+i)) at iteration i); 0: the last weights, "
                            "as the reference port")
    content_weight: float = _opt(1.0, "weight of the content loss")
    style_weight: float = _opt(10.0, "weight of the style loss")
    tv_weight: float = _opt(0.0, "weight of a total-variation penalty on the output (not in the paper)")
    identity_pixel_weight: float = _opt(0.0, "weight of the identity loss in pixels: MSE between the content and "
                                        "the decoded content features (SANet uses 50; not in the AdaIN paper)")
    identity_feature_weight: float = _opt(0.0, "weight of the identity loss in features: MSE at relu1_1..relu4_1 "
                                          "between the content and its reconstruction (SANet uses 1)")
    identity_style: bool = _opt(False, "the identity terms also reconstruct the style images from their own "
                                "features, as SANet does (one more decoder pass per image)")
    colour_weight: float = _opt(0.0, "weight of a colour term: sliced Wasserstein distance between the output's "
                                "and the style's RGB colours (not in the paper)")
    stability_weight: float = _opt(0.0, "weight of a stability term (Wang et al. 2020): the content shifted by 1-7 px "
                                   "plus noise must decode to the shifted output, so video flickers less "
                                   "(not in the paper; one more decoder pass)")
    style_std_balance: float = _opt(0.0, "weigh each channel's std error in the style loss by its typical spread "
                                    "over the style set to the power -2*B (0: the paper; 1: in units of its spread), "
                                    "so a few wide channels (relu2_1 #123) stop dominating")
    style_image_balance: bool = _opt(False, "divide each image's style-loss gradient by its own style loss, so every "
                                     "pair counts alike (the gradient of the mean log style loss, as the evaluation's "
                                     "geometric mean of ratios; not in the paper)")
    teacher: Optional[str] = _opt(None, "a decoder file of the same levels to distil: with --teacher-weight the output "
                                  "also matches, in VGG features at relu1_1..relu4_1, what that decoder draws with "
                                  "style_boost --teacher-boost (two transfers), so one transfer learns the boosted "
                                  "style (not in the paper)")
    teacher_weight: float = _opt(0.0, "weight of the --teacher term (0: off)")
    teacher_boost: float = _opt(0.5, "the style_boost of the --teacher's two transfers (0 to 1)")
    skip_content_weight: str = _opt("0", "with --decoder skip: weight of a content loss at each skip level against "
                                    "its AdaIN target, as the paper's at relu4_1, so the output keeps the content's "
                                    "finer structure (not in the paper); one number for every level, or LEVEL=W,... "
                                    "per level (levels not named: 0)")
    # images
    resize: int = _opt(512, "resize size before cropping (see --resize-mode)")
    resize_mode: str = _opt("square", "square: resize to RESIZE x RESIZE (reference port); short: short side "
                            "to RESIZE keeping aspect (paper); none: no resize", choices=RESIZE_MODES)
    crop: int = _opt(256, "random crop size")
    min_scale: float = _opt(0.6, "also scale each resized image by a random factor in [MIN_SCALE, 1] (never "
                            "below the crop), so crops also show whole-image views at smaller scales")
    max_scale: float = _opt(1.0, "the random factor's upper end: above 1 some crops are enlarged (soft, "
                            "upsampled detail, as a small image stylized at a larger size)")
    min_image_size: int = _opt(64, "skip images whose short side is below this many pixels")
    workers: int = _opt(2, "data loading worker processes (0: load in the training process)")
    seed: int = _opt(0, "seed of decoder init, data order and crops")
    deterministic: bool = _opt(False, "deterministic GPU kernels (slower): a resumed CUDA run then equals an "
                               "uninterrupted one bit for bit, as CPU runs always do")
    # numerics and devices
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N")
    precision: str = _opt("auto", "autocast: auto (bf16 on CUDA and on CPUs with AVX-512 BF16 or AMX, else "
                          "fp32), fp32, bf16, fp16 (CUDA)", choices=PRECISIONS)
    channels_last: Optional[bool] = _opt(True, "channels_last memory format (on a 2-core AVX-512 "
                                         "CPU 1.5x the steps a second of contiguous tensors under bf16, 1.04x under "
                                         "fp32: bench/bench_train.py)")
    threads: int = _opt(0, "torch CPU threads per process (0: torch's default)")
    # monitoring and checkpoints
    log_every: int = _opt(10, "iterations between log records (JSONL + CSV) and progress lines")
    sample_every: int = _opt(1000, "iterations between sample grids (content | style | output); 0: never")
    checkpoint_every: int = _opt(1000, "iterations between checkpoints and output rewrites; 0: only at the end")
    progress: Optional[bool] = _opt(None, "live progress bar (default: when stderr is a terminal)")
    resume: Optional[str] = _opt(None, "continue from a checkpoint; 'auto' (bare --resume): RUN_DIR/checkpoint.pt",
                                 nargs="?", const="auto")

    @property
    def run_path(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        out = Path(self.out or "decoder.safetensors")
        return out.with_name(out.stem + "_run")

    @property
    def skip_levels(self) -> tuple[str, ...]:
        return parse_levels(self.skips, SKIP_LAYERS)

    @property
    def block_levels(self) -> tuple[str, ...]:
        return parse_levels(self.blocks)

    @property
    def skip_content_weights(self) -> dict[str, float]:
        """--skip-content-weight as skip level -> weight, levels weighted 0 left out."""
        text = str(self.skip_content_weight).strip()
        levels = self.skip_levels
        try:
            if "=" not in text:
                weights = dict.fromkeys(levels, float(text))
            else:
                weights = {}
                for item in filter(None, (part.strip() for part in text.split(","))):
                    name, value = (side.strip() for side in item.split("="))
                    if name not in levels or name in weights:
                        raise ValueError
                    weights[name] = float(value)
        except ValueError:
            weights = {"": math.nan}
        if not all(math.isfinite(w) and w >= 0.0 for w in weights.values()):
            raise ValueError(f"--skip-content-weight must be one number >= 0 or LEVEL=W,... naming distinct levels of "
                             f"{levels} (the decoder's skips) with weights >= 0; got {self.skip_content_weight!r}")
        return {name: w for name, w in weights.items() if w}

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.content_weight, self.style_weight, self.tv_weight, self.identity_pixel_weight,
                           self.identity_feature_weight, self.identity_style, self.colour_weight,
                           self.stability_weight, self.style_image_balance, self.skip_content_weights,
                           self.teacher_weight, self.teacher_boost)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def validate(self) -> None:
        """Fail early with a clear message instead of deep inside the loop."""
        for name in ("content", "style", "encoder", "out"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} is required")
        if not str(self.out).endswith(".safetensors"):
            raise ValueError(f"--out must end in .safetensors, got {self.out}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"--resize-mode must be one of {RESIZE_MODES}")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"--decoder must be one of {tuple(DECODER_KINDS)}, got {self.decoder!r}")
        if self.skips is not None and self.decoder != "skip":
            raise ValueError(f"--skips names the levels of a skip decoder: give --decoder skip too, or leave --skips "
                             f"out for a {self.decoder} decoder")
        if self.blocks is not None and self.decoder != "skip":
            raise ValueError(f"--blocks adds residual blocks to a skip decoder: give --decoder skip too, or leave "
                             f"--blocks out for a {self.decoder} decoder")
        if self.blocks is not None:
            upsampled = [name for name, layer in ENCODER_LAYERS.items() if layer.stride > 1]
            if any(name not in upsampled for name in self.block_levels) or len(set(self.block_levels)) != len(
                    self.block_levels):
                raise ValueError(f"--blocks must name distinct levels from {tuple(upsampled)} (the grids the decoder "
                                 f"upsamples from), comma separated; got {self.blocks!r}")
        if self.skip_content_weights and self.decoder != "skip":
            raise ValueError(f"--skip-content-weight weighs a content loss at a skip decoder's shallower levels: give "
                             f"--decoder skip too, or leave it out for a {self.decoder} decoder")
        if self.decoder == "skip":
            unknown = [name for name in self.skip_levels if name not in ENCODER_LAYERS or name == ADAIN_LAYER]
            if unknown or not self.skip_levels or len(set(self.skip_levels)) != len(self.skip_levels):
                raise ValueError(f"--skips must name distinct encoder layers other than {ADAIN_LAYER} from "
                                 f"{tuple(ENCODER_LAYERS)}, comma separated; got {self.skips!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}")
        if self.crop < MIN_SIZE or self.crop % GRID:
            raise ValueError(f"--crop must be a multiple of {GRID} and at least {MIN_SIZE}, got {self.crop}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"--min-scale must be in (0, 1], got {self.min_scale}")
        if not (math.isfinite(self.max_scale) and self.max_scale >= 1.0):
            raise ValueError(f"--max-scale must be a finite number >= 1, got {self.max_scale}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        for name in ("content_weight", "style_weight", "tv_weight", "identity_pixel_weight",
                     "identity_feature_weight", "colour_weight", "stability_weight", "style_std_balance",
                     "teacher_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if bool(self.teacher_weight) != bool(self.teacher):
            raise ValueError("--teacher and --teacher-weight go together: give the decoder file to distil and a "
                             "weight > 0, or neither")
        if not (math.isfinite(self.teacher_boost) and 0.0 <= self.teacher_boost <= 1.0):
            raise ValueError(f"--teacher-boost must be in [0, 1] (style_boost's range), got {self.teacher_boost}")
        if self.identity_style and not (self.identity_pixel_weight or self.identity_feature_weight):
            raise ValueError("--identity-style adds the style images to the identity terms, which are off: give "
                             "--identity-pixel-weight or --identity-feature-weight too (SANet: 50 and 1)")
        if self.batch_size < 1 or self.max_iter < 0:
            raise ValueError("--batch-size must be >= 1 and --max-iter >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0.0):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.new_lr_scale) and self.new_lr_scale > 0.0):
            raise ValueError(f"--new-lr-scale must be a finite number > 0, got {self.new_lr_scale}")
        if not (math.isfinite(self.lr_decay) and self.lr_decay >= 0.0):
            raise ValueError(f"--lr-decay must be a finite number >= 0, got {self.lr_decay}")
        if self.log_every < 1:
            raise ValueError(f"--log-every must be >= 1, got {self.log_every}")
        if self.cooldown_iters > self.max_iter:
            raise ValueError(f"--cooldown-iters ({self.cooldown_iters}) is longer than the run (--max-iter "
                             f"{self.max_iter}): give a --max-iter that far ahead of where the run starts")
        for name in ("sample_every", "checkpoint_every", "warmup_iters", "cooldown_iters", "workers", "threads",
                     "min_image_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.resize < 1 and self.resize_mode != "none":
            raise ValueError(f"--resize must be >= 1 (or use --resize-mode none), got {self.resize}")


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """One option per field; SUPPRESS defaults so we know which options were given (resume overrides)."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=description or __doc__,
                                     argument_default=argparse.SUPPRESS)
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_text = meta.pop("help") + f" (default: {f.default})"
        hint = hints[f.name]
        if hint in (bool, Optional[bool]):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = next((t for t in (int, float, str) if hint in (t, Optional[t])), str)
            parser.add_argument(flag, type=kind, help=help_text, **meta)
    return parser


def parse_overrides(argv: list[str] | None = None, description: str | None = None) -> dict[str, Any]:
    """Only the options given on the command line, as field names to values."""
    return vars(build_parser(description).parse_args(argv))
