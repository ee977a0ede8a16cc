"""training.evaluate: SSIM against closed forms, the scores and contact sheet, and the baseline decoder."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adain_nodes.core.color import luminance
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.core.layers import STYLE_LAYERS
from adain_nodes.models.networks import AdaINDecoder, VGGEncoder
from adain_nodes.models.weights import load_decoder, load_encoder, save_safetensors
from adain_nodes.pipeline import stylize
from training.evaluate import (distinct_stems, evaluate, evaluate_outputs, gaussian_window, load_image, main,
                               output_name, ssim, validation_pairs)
from training.losses import style_loss, style_loss_terms
from training.monitor import to_pil

SHARED = Path(os.environ.get("ADAIN_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions gain nothing from two threads, and a busy 2-core machine makes them spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ssim_closed_forms():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 40, 40, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert gaussian_window().shape == (11, 11) and abs(float(gaussian_window().sum()) - 1) < 1e-6
    # constant images: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.3, 0.6, 0.01 ** 2
    got = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    torch.testing.assert_close(got, torch.tensor([(2 * a * b + c1) / (a * a + b * b + c1)]))
    noise = torch.rand(2, 1, 40, 40, generator=g)
    assert float(ssim(x, noise).max()) < 0.1
    assert float(ssim(x, 1 - x).max()) < 0  # inverted structure correlates negatively
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert 0.1 < float(ssim(x, blurred).min()) < 1


def _images(folder: Path, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(3):
        low = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(low).resize((48 + 8 * i, 40), Image.BICUBIC).save(folder / f"{i}.png")


def _random_setup(tmp_path: Path) -> None:
    """val/content, val/style and random enc/dec .safetensors under ``tmp_path``."""
    _images(tmp_path / "val" / "content", 1)
    _images(tmp_path / "val" / "style", 2)
    torch.manual_seed(0)
    save_safetensors(VGGEncoder().state_dict(), tmp_path / "enc.safetensors", {})
    save_safetensors(AdaINDecoder().state_dict(), tmp_path / "dec.safetensors", {})


def test_evaluate_random_networks(tmp_path):
    _random_setup(tmp_path)
    pairs = validation_pairs(tmp_path / "val", 2)
    assert [(c.name, s.name) for c, s in pairs] == [("0.png", "0.png"), ("1.png", "1.png")]
    score = evaluate(tmp_path / "dec.safetensors", load_encoder(tmp_path / "enc.safetensors"), pairs, 32,
                     sheet=tmp_path / "sheet.png", thumb=32)
    assert score.pairs == 2 and np.isfinite(score.style_loss_ratio) and -1 <= score.ssim <= 1
    assert np.isfinite(score.content_loss) and score.content_loss > 0
    assert Image.open(tmp_path / "sheet.png").height == 2 * 32 + 4
    encoder, decoder = load_encoder(tmp_path / "enc.safetensors"), load_decoder(tmp_path / "dec.safetensors")
    with torch.no_grad():  # alpha 0 decodes the content's own features: the decoder as an inverse of the encoder
        contents = [load_image(c, 32) for c, _ in pairs]
        reconstructions = [decoder.network(encoder.network.encode(c)[0])[..., :c.shape[-2], :c.shape[-1]].clamp(0, 1)
                           for c in contents]
    expected = sum(float(ssim(luminance(r), luminance(c))) for r, c in zip(reconstructions, contents)) / 2
    assert score.reconstruction_ssim == pytest.approx(expected, abs=1e-3)
    assert main([str(tmp_path / "dec.safetensors"), "--encoder", str(tmp_path / "enc.safetensors"), "--val",
                 str(tmp_path / "val"), "--pairs", "1", "--size", "32", "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())[0]["pairs"] == 1
    before = load_decoder(tmp_path / "dec.safetensors").network.state_dict()
    assert main([str(tmp_path / "dec.safetensors"), "--encoder", str(tmp_path / "enc.safetensors"), "--val",
                 str(tmp_path / "val"), "--pairs", "1", "--size", "32", "--record"]) == 0
    recorded = load_decoder(tmp_path / "dec.safetensors")
    scored = json.loads((tmp_path / "s.json").read_text())[0]
    validation = json.loads(recorded.metadata["validation"])
    assert validation["pairs"] == 1 and validation["grey_ssim"] == round(scored["ssim"], 4)
    assert validation["reconstruction_ssim"] == round(scored["reconstruction_ssim"], 4)
    assert all(torch.equal(before[k], v) for k, v in recorded.network.state_dict().items())


def test_runs_whose_decoders_share_a_file_name_get_their_own_sheets(tmp_path):
    _random_setup(tmp_path)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        shutil.copy(tmp_path / "dec.safetensors", tmp_path / run / "decoder.safetensors")
    assert main([str(tmp_path / "a" / "decoder.safetensors"), str(tmp_path / "b" / "decoder.safetensors"),
                 "--encoder", str(tmp_path / "enc.safetensors"), "--val", str(tmp_path / "val"), "--pairs", "1",
                 "--size", "32", "--sheet-dir", str(tmp_path / "sheets"), "--json", str(tmp_path / "s.json")]) == 0
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == ["a_decoder_sheet.png", "b_decoder_sheet.png"]
    assert [r["decoder"] for r in json.loads((tmp_path / "s.json").read_text())] == [
        "a_decoder.safetensors", "b_decoder.safetensors"]
    assert distinct_stems(["x/dec.safetensors", "y/other.safetensors"]) == ["dec", "other"]


def test_outliers_show_in_the_mean_layers_and_worst_pair(tmp_path):
    """The arithmetic mean, per-layer terms and worst pair are consistent with each other and the ratio."""
    _random_setup(tmp_path)
    encoder = load_encoder(tmp_path / "enc.safetensors")
    score = evaluate(tmp_path / "dec.safetensors", encoder, validation_pairs(tmp_path / "val", 2), 32)
    assert list(score.layers) == list(STYLE_LAYERS)
    per_layer_total = sum(v["mean"] + v["std"] for v in score.layers.values())
    for layer, channels in zip(STYLE_LAYERS, (64, 128, 256, 512)):
        top = score.layers[layer]
        assert 0 <= top["top_std_channel"] < channels
        assert 1 / channels - 1e-9 <= top["top_std_channel_share"] <= 1  # the largest share is at least the mean
    assert per_layer_total == pytest.approx(score.style_loss, rel=1e-3)
    assert score.worst_ratio >= score.style_loss_ratio * 0.999  # a geometric mean is never above its largest term
    assert score.worst_pair.split()[0] in ("00", "01")
    args = [str(tmp_path / "dec.safetensors"), "--encoder", str(tmp_path / "enc.safetensors"), "--val",
            str(tmp_path / "val"), "--pairs", "1", "--size", "32", "--json", str(tmp_path / "s.json")]
    extra = [str(tmp_path / "val" / "content" / "1.png"), str(tmp_path / "val" / "style" / "0.png")]
    assert main(args + ["--also", *extra]) == 0
    assert json.loads((tmp_path / "s.json").read_text())[0]["pairs"] == 2
    with pytest.raises(SystemExit):
        main(args + ["--also", extra[0], str(tmp_path / "missing.png")])


def test_style_loss_terms_add_up_to_the_style_loss():
    torch.manual_seed(0)
    features = [torch.randn(2, c, 8, 8) for c in (3, 5)]
    targets = [torch.randn(2, c, 8, 8) * 2 + 1 for c in (3, 5)]
    terms = style_loss_terms(features, targets)
    assert len(terms) == 2 and all(m > 0 and s > 0 for m, s in terms)
    assert float(style_loss(features, targets)) == pytest.approx(float(sum(m + s for m, s in terms)))
    assert float(style_loss(targets, targets)) == pytest.approx(0.0, abs=1e-6)


def test_precomputed_outputs_score_like_the_decoder(tmp_path):
    """--outputs: the decoder's own outputs saved as PNGs score as the decoder does (up to 8-bit rounding)."""
    _random_setup(tmp_path)
    encoder, decoder = load_encoder(tmp_path / "enc.safetensors"), load_decoder(tmp_path / "dec.safetensors")
    pairs = validation_pairs(tmp_path / "val", 2)
    out = tmp_path / "peer"
    out.mkdir()
    for i, (content_path, style_path) in enumerate(pairs):
        output = stylize(encoder, decoder, load_image(content_path, 32), load_image(style_path, 32),
                         StandaloneRuntime(torch.device("cpu")))
        to_pil(output[0]).save(out / output_name(i, content_path))
    direct = evaluate(tmp_path / "dec.safetensors", encoder, pairs, 32)
    score = evaluate_outputs(out, encoder, pairs, 32, sheet=tmp_path / "sheet.png", thumb=32)
    assert score.decoder == "peer" and score.pairs == 2
    assert score.style_loss_ratio == pytest.approx(direct.style_loss_ratio, rel=0.05)
    assert score.ssim == pytest.approx(direct.ssim, abs=0.02)
    assert Image.open(tmp_path / "sheet.png").height == 2 * 32 + 4
    assert main(["--outputs", str(out), "--encoder", str(tmp_path / "enc.safetensors"), "--val", str(tmp_path / "val"),
                 "--pairs", "2", "--size", "32", "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())[0]["decoder"] == "peer"
    Image.new("RGB", (5, 5)).save(out / output_name(1, pairs[1][0]))  # not the content's size
    with pytest.raises(ValueError, match="but the content is"):
        evaluate_outputs(out, encoder, pairs, 32)
    (out / output_name(1, pairs[1][0])).unlink()
    with pytest.raises(FileNotFoundError, match="no output for pair 1"):
        evaluate_outputs(out, encoder, pairs, 32)
    with pytest.raises(SystemExit):
        main(["--encoder", str(tmp_path / "enc.safetensors")])  # neither a decoder nor --outputs


def test_baseline_decoder_lowers_style_loss():
    """The shared baseline decoder must stylize: style loss well below the unstylized content's."""
    files = [SHARED / "weights" / "vgg19_normalised_relu4_1.safetensors",
             SHARED / "weights" / "decoder_baseline_relu4_1.safetensors", SHARED / "data" / "val"]
    if not all(f.exists() for f in files):
        pytest.skip(f"needs ../shared (weights and data/val) at {SHARED}; set ADAIN_SHARED_DIR")
    score = evaluate(files[1], load_encoder(files[0]), validation_pairs(files[2], 2), short_side=128)
    assert score.style_reduction > 2, score
    assert 0.05 < score.ssim < 0.9, score


def test_validation_halves_are_disjoint_stable_and_keep_the_earlier_pairs(tmp_path):
    """64 images a side: two halves of 32, disjoint, covering all, independent of the listing order, with the
    16 earlier pairs (the first 16 in name order) all in the decision half."""
    from training.val_split import half_files, half_pairs

    names = [f"{source}_{k:03d}.jpg" for source in "abcd" for k in range(16)]
    order = np.random.default_rng(0).permutation(len(names))
    for kind in ("content", "style"):
        (tmp_path / kind).mkdir()
        for i in order:  # created in a shuffled order: the split must depend on names only
            (tmp_path / kind / names[i]).write_bytes(b"")
        (tmp_path / kind / "notes.txt").write_text("not an image")
    decision, heldout = (half_files(tmp_path / "content", h) for h in ("decision", "heldout"))
    assert len(decision) == len(heldout) == 32
    assert not {p.name for p in decision} & {p.name for p in heldout}
    assert sorted(p.name for p in decision + heldout) == sorted(names)
    assert [p.name for p in decision[:16]] == sorted(names)[:16]
    assert {p.name[0] for p in heldout} == set("bcd") <= {p.name[0] for p in decision}  # 'a' is the earlier 16
    pairs = half_pairs(tmp_path, "heldout")
    assert [(c.name, s.name) for c, s in pairs] == [(p.name, p.name) for p in heldout]
    assert half_pairs(tmp_path, "decision", 3) == half_pairs(tmp_path, "decision")[:3]
    with pytest.raises(ValueError, match="half"):
        half_files(tmp_path / "content", "test")
    if (SHARED / "data" / "val" / "content").is_dir():  # the real set: the decision half starts with the old pairs
        real = SHARED / "data" / "val"
        assert half_pairs(real, "decision")[:16] == validation_pairs(real, 16)
        assert len(half_pairs(real, "decision")) == len(half_pairs(real, "heldout")) == 32


def test_sweep_matches_stylize_and_stops_at_the_target_ssim(tmp_path, session_models):
    """Each curve point is pipeline.stylize at that alpha (and detail); SSIM to the content rises as alpha falls on a
    small random-weight case; the sweep stops after the pass whose SSIM reaches the target."""
    from conftest import DECODER_FILES, ENCODER_FILE
    from training.curve import Curve, alpha_grid, sweep, sweep_outputs

    _random_setup(tmp_path)
    decoder_file = session_models / DECODER_FILES[0]  # He-initialised: outputs with structure
    encoder, decoder = load_encoder(session_models / ENCODER_FILE), load_decoder(decoder_file)
    runtime = StandaloneRuntime(torch.device("cpu"))
    content = load_image(tmp_path / "val" / "content" / "1.png", 32)
    style = load_image(tmp_path / "val" / "style" / "0.png", 32)
    for alpha, detail, image in sweep_outputs(encoder, decoder, content, style, runtime, [1.0, 0.6], [0.0, 0.5]):
        torch.testing.assert_close(image, stylize(encoder, decoder, content, style, runtime, alpha, detail=detail))
    for alpha, _, image in sweep_outputs(encoder, decoder, content, style, runtime, [1.0, 0.6], [0.0], boost=0.5):
        torch.testing.assert_close(image, stylize(encoder, decoder, content, style, runtime, alpha, boost=0.5))
    for alpha, _, image in sweep_outputs(encoder, decoder, content, style, runtime, [1.0, 0.6], [0.0], refine=1):
        torch.testing.assert_close(image, stylize(encoder, decoder, content, style, runtime, alpha, refine=1),
                                   rtol=1e-4, atol=1e-4)
    assert alpha_grid(0.1, 0.3) == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    pairs = validation_pairs(tmp_path / "val", 2)
    grid = alpha_grid(0.25, 0.0)
    (full,), _ = sweep(decoder_file, encoder, pairs, 32, alphas=grid)
    assert full.alphas == grid
    ssims = [s.ssim for s in full.scores]
    assert all(a < b for a, b in zip(ssims, ssims[1:])), ssims  # less style, more of the content's structure
    target = (ssims[0] + ssims[1]) / 2  # reached at the second alpha: the first pass (2 alphas) is all there is
    curves, thumbs = sweep(decoder_file, encoder, pairs, 32, details=[0.0, 0.5], stop_ssim=target,
                           alphas=grid, thumb=16)
    assert [c.alphas for c in curves] == [grid[:2], grid[:2]]
    assert curves[0].scores[1].ssim == pytest.approx(ssims[1], abs=1e-6)
    assert curves[0].passing(target) == 1 and len(thumbs[(0.5, grid[0])]) == 2
    expected = full.scores[0].style_reduction + 0.5 * (full.scores[1].style_reduction - full.scores[0].style_reduction)
    assert curves[0].reduction_at(target) == pytest.approx(expected, rel=1e-5)
    assert Curve("none", 0.0, [1.0], [full.scores[0]]).reduction_at(ssims[-1]) is None
    assert curves[1].scores[0].edge_sharpness != curves[0].scores[0].edge_sharpness


def test_sweep_command_line_prints_the_curve_beside_the_peer(tmp_path, capsys):
    """--half --sweep --peer at one size: the peer's point, the curve, the plot and the side-by-side sheet."""
    _random_setup(tmp_path)
    for kind, seed in (("content", 3), ("style", 4)):  # 4 a side: ranks 0..3 are all in the decision half
        low = (np.random.default_rng(seed).random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(low).resize((40, 48), Image.BICUBIC).save(tmp_path / "val" / kind / "3.png")
    from training.val_split import half_pairs
    pairs = half_pairs(tmp_path / "val", "decision")
    assert len(pairs) == 4
    peer = tmp_path / "peer" / "decision-32"
    peer.mkdir(parents=True)
    for i, (content_path, _) in enumerate(pairs):  # the "peer" gives back a blurred content
        to_pil(torch.nn.functional.avg_pool2d(load_image(content_path, 32), 3, 1, 1)[0]).save(
            peer / output_name(i, content_path))
    args = [str(tmp_path / "dec.safetensors"), "--encoder", str(tmp_path / "enc.safetensors"), "--val",
            str(tmp_path / "val"), "--half", "decision", "--size", "32", "--sweep", "--peer", str(tmp_path / "peer"),
            "--alpha-step", "0.5", "--min-alpha", "0", "--sheet-dir", str(tmp_path / "out"), "--thumb", "24",
            "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "peer (decision-32): 4 pairs" in printed and "at the peer's SSIM" in printed
    results = json.loads((tmp_path / "r.json").read_text())
    assert results[0]["peer"]["pairs"] == 4 and results[1]["alphas"][0] == 1.0
    assert Image.open(tmp_path / "out" / "dec_decision_32_curve.png").size == (900, 560)
    sheet = Image.open(tmp_path / "out" / "dec_decision_32_sheet.png")
    assert sheet.height == 4 * 24 + 3 * 4
    with pytest.raises(SystemExit):
        main(args[:-2] + ["--record"])
