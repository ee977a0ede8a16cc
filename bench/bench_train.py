"""Training throughput: this trainer (fp32 and bf16, channels_last and contiguous) next to a straightforward loop of
the same network.

    PYTHONPATH=. python bench/bench_train.py [--iters 8] [--batch 4] [--crop 160] [--repeats 2] [--recipe relay]

``--recipe paper`` trains the relu4_1 decoder with the paper's loss; ``--recipe relay`` the default decoder's own
recipe (docs/training.md): the skip decoder with the relu1_1 level, the identity, stability and skip-content terms
and the channel-balanced style loss, where most of a step's time goes since stop 30.

The straightforward loop is the reference port's ``train.py`` shape: a torchvision
Resize/RandomCrop/ToTensor DataLoader, fp32, contiguous tensors, the same losses and Adam.
Both run in this process on the same data (``../shared/data/train`` when present, random images
otherwise), alternating ``--repeats`` times (other work on the machine skews single runs); the
best steady-state rate of each (first two iterations excluded) is reported with the ratio.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adain_nodes.core.stats import adain, mean_std  # noqa: E402
from adain_nodes.core.layers import STYLE_LAYERS  # noqa: E402
from adain_nodes.host.paths import DEFAULT_ENCODER  # noqa: E402
from adain_nodes.models.networks import AdaINDecoder, VGGEncoder  # noqa: E402
from adain_nodes.models.weights import load_encoder, save_safetensors  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.train import train  # noqa: E402

# The relay's loss recipe (docs/training.md, "Stop 33": the whole command); the paper's is TrainConfig's defaults.
RELAY_RECIPE = dict(decoder="skip", skips="relu3_1,relu2_1,relu1_1", style_weight=50.0, identity_pixel_weight=50.0,
                    identity_feature_weight=1.0, stability_weight=1000.0, skip_content_weight=1.0,
                    style_std_balance=0.5)
SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
WARMUP = 2


class Folder(Dataset):
    def __init__(self, root: Path, crop: int, resize: int) -> None:
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        self.transform = transforms.Compose([transforms.Resize(resize), transforms.RandomCrop(crop),
                                             transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(Image.open(self.files[index]).convert("RGB"))


def _loop(dataset: Dataset, batch: int, workers: int):
    loader = DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset, replacement=True,
                                                                         num_samples=1 << 30),
                        num_workers=workers)
    return iter(loader)


def straightforward(args, encoder_file: str) -> float:
    """Iterations per second of a plain fp32 loop written the obvious way."""
    encoder = load_encoder(encoder_file).network
    torch.manual_seed(0)
    decoder = AdaINDecoder()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4)
    contents = _loop(Folder(args.content, args.crop, args.resize), args.batch, args.workers)
    styles = _loop(Folder(args.style, args.crop, args.resize), args.batch, args.workers)
    t0 = None
    for i in range(args.iters + WARMUP):
        if i == WARMUP:
            t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = 1e-4 / (1 + 5e-5 * i)
        content, style = next(contents), next(styles)
        style_feats = encoder.encode(style, STYLE_LAYERS)
        content_feat = encoder.encode(content)[0]
        target = adain(content_feat, *mean_std(style_feats[-1]))
        output = decoder(target)
        out_feats = encoder.encode(output, STYLE_LAYERS)
        loss_c = F.mse_loss(out_feats[-1], target)
        loss_s = 0.0
        for a, b in zip(out_feats, style_feats):
            (am, as_), (bm, bs) = mean_std(a), mean_std(b)
            loss_s = loss_s + F.mse_loss(am, bm) + F.mse_loss(as_, bs)
        loss = loss_c + 10.0 * loss_s
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return args.iters / (time.perf_counter() - t0)


def trainer(args, encoder_file: str, precision: str, memory_format: str, out_dir: Path) -> float:
    cfg = TrainConfig(content=str(args.content), style=str(args.style), encoder=encoder_file,
                      out=str(out_dir / f"bench_{precision}_{memory_format}.safetensors"), max_iter=args.iters + WARMUP,
                      channels_last=memory_format == "channels_last",
                      batch_size=args.batch, crop=args.crop, resize=args.resize, resize_mode="short",
                      workers=args.workers, precision=precision, log_every=10 ** 9, sample_every=0,
                      checkpoint_every=0, progress=False, threads=args.threads, min_image_size=32,
                      **(RELAY_RECIPE if args.recipe == "relay" else {}))
    return train(cfg).steady_iterations_per_s


def random_data(root: Path) -> tuple[Path, Path, str]:
    rng = np.random.default_rng(0)
    for kind in ("content", "style"):
        (root / kind).mkdir(parents=True)
        for i in range(16):
            low = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
            Image.fromarray(low).resize((320, 400), Image.BICUBIC).save(root / kind / f"{i}.jpg")
    torch.manual_seed(0)
    save_safetensors(VGGEncoder().state_dict(), root / "encoder.safetensors", {"kind": "encoder"})
    return root / "content", root / "style", str(root / "encoder.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=8, help="timed iterations per run (after 2 warm-up)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--resize", type=int, default=320, help="short side before cropping")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", choices=("paper", "relay"), default="paper",
                        help="the trainer's loss and decoder: the paper's, or the default decoder's relay recipe")
    parser.add_argument("--precisions", default="fp32,bf16", help="trainer precisions to time")
    parser.add_argument("--formats", default="channels_last,contiguous",
                        help="trainer memory formats to time (channels_last is its default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        train_dir = SHARED / "data" / "train"
        encoder_file = SHARED / "weights" / DEFAULT_ENCODER
        if train_dir.is_dir() and encoder_file.is_file():
            args.content, args.style, encoder = train_dir / "content", train_dir / "style", str(encoder_file)
            source = str(train_dir)
        else:
            args.content, args.style, encoder = random_data(Path(tmp) / "data")
            source = "random images (../shared absent)"
        precisions = [p for p in args.precisions.split(",") if p]
        formats = [f for f in args.formats.split(",") if f]
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, run in [("straightforward fp32", lambda: straightforward(args, encoder))] + [
                    (f"trainer {p} {f}", lambda p=p, f=f: trainer(args, encoder, p, f, Path(tmp)))
                    for p in precisions for f in formats]:
                best[name] = max(best.get(name, 0.0), run())
    base = best["straightforward fp32"]
    print(f"data {source}; trainer recipe {args.recipe}; batch {args.batch}, crop {args.crop}, "
          f"{args.threads} threads, {args.workers} workers, "
          f"torch {torch.__version__}, best of {args.repeats} x {args.iters} iterations")
    for name, rate in best.items():
        print(f"{name:36s} {rate:7.3f} it/s  {rate * args.batch:7.2f} img/s  ratio {rate / base:5.2f}")


if __name__ == "__main__":
    main()
