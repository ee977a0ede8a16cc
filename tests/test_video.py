"""Temporally stable video (adain_nodes/video.py and its node) on random-weight networks."""
from __future__ import annotations

import pytest
import torch
from conftest import random_image

from adain_nodes import pipeline
from adain_nodes.core.stats import Moments, MomentsWindow
from adain_nodes.errors import AdaINInputError
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.nodes import NODE_CLASS_MAPPINGS
from adain_nodes.video import Stability, estimate_shift, is_cut, same_surface, stylize_video, translate

RUNTIME = StandaloneRuntime(torch.device("cpu"))


def scene(height: int = 96, width: int = 200, seed: int = 0) -> torch.Tensor:
    return random_image(1, height, width, seed=seed).permute(0, 3, 1, 2)


def pan(step: int, frames: int = 4, size: int = 96, seed: int = 0) -> torch.Tensor:
    picture = scene(size, size + step * frames, seed)
    return torch.cat([picture[..., t * step:t * step + size] for t in range(frames)])


def flicker(outputs: torch.Tensor, step: int, border: int = 24) -> float:
    """Mean absolute difference of output t+1 and output t moved by the pan, inside the border."""
    w = outputs.shape[-1]
    return float((outputs[1:, :, border:-border, border:w - step - border]
                  - outputs[:-1, :, border:-border, border + step:w - border]).abs().mean())


def test_shift_is_recovered_with_its_sign():
    picture = scene(80, 120)
    for dy, dx in ((0, 3), (2, -5), (-4, 1)):
        previous = picture[0, :, 10:74, 20:100]
        current = picture[0, :, 10 + dy:74 + dy, 20 + dx:100 + dx]  # current[y, x] = previous[y + dy, x + dx]
        assert estimate_shift(previous, current) == (dy, dx)
        moved, valid = translate(previous, dy, dx)
        assert torch.equal(moved[:, valid], current[:, valid])


def _reference(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std [C] of the frames' [C, H, W] features joined, in float64 (unbiased variance plus eps)."""
    joined = torch.cat([f.double().flatten(1) for f in frames], dim=1)
    var, mean = torch.var_mean(joined, dim=1, correction=1)
    return mean, (var + 1e-5).sqrt()


def test_pooled_statistics_equal_a_float64_reference():
    """Exact pooling of per-frame moments over a window of 2, carried from one call to the next and emptied at a
    cut, also where a float32 one-pass variance (E[x^2] - E[x]^2) would cancel catastrophically (a mean 50 times
    the spread)."""
    torch.manual_seed(0)
    frames = [50.0 + torch.randn(5, 40, 50) + 0.3 * k for k in range(5)]
    window = MomentsWindow(2)
    first = window.pooled(Moments.of(torch.stack(frames[:3])))
    rest = window.pooled(Moments.of(torch.stack(frames[3:])), starts=[False, True])  # frame 5 starts a new shot
    mean, std = (torch.cat(parts) for parts in zip(first, rest))
    for k, frames_pooled in enumerate([frames[:1], frames[:2], frames[1:3], frames[2:4], frames[4:]]):
        ref_mean, ref_std = _reference(frames_pooled)
        torch.testing.assert_close(mean[k].double(), ref_mean, rtol=1e-6, atol=0)
        torch.testing.assert_close(std[k].double(), ref_std, rtol=1e-5, atol=0)
    flat = torch.cat([f.flatten(1) for f in frames[:2]], dim=1)  # what the exact pooling must beat
    naive = ((flat ** 2).mean(dim=1) - flat.mean(dim=1) ** 2).double() * flat.shape[1] / (flat.shape[1] - 1)
    assert ((naive + 1e-5).sqrt() - _reference(frames[:2])[1]).abs().max() > 1e-4
    own = torch.stack(pipeline.mean_std(frames[0][None]))[:, 0]
    torch.testing.assert_close(torch.stack([mean[0], std[0]]), own)


def test_modular_pooling_equals_a_float64_reference(encoder):
    """AdaIN Blend's pool_frames: each image of the batch pooled with the images before it, up to the window."""
    features = pipeline.encode(encoder, pan(3, frames=4, size=48), RUNTIME)
    pooled = pipeline.clip_statistics(features, 3)
    level = features.content[features.layer]
    for k, start in enumerate([0, 0, 0, 1]):
        ref_mean, ref_std = _reference(list(level[start:k + 1]))
        torch.testing.assert_close(pooled[features.layer][0][k].double(), ref_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pooled[features.layer][1][k].double(), ref_std, rtol=1e-5, atol=1e-6)
    assert pipeline.clip_statistics(features, 1) is None


def test_modular_graph_gives_the_video_nodes_frames(encoder, decoder):
    """Encode -> Blend (pool_frames 3) -> Decode on a clip without cuts is the video node with pool_frames 3 and
    nothing else; and pooling changes the picture (so the equality is not per-frame AdaIN twice)."""
    nodes = {name: NODE_CLASS_MAPPINGS[name]() for name in
             ("AdaINEncode", "AdaINBlend", "AdaINDecode", "AdaINStyleStats", "AdaINVideoStyleTransfer")}
    frames, style = pan(5, frames=5, size=48).permute(0, 2, 3, 1), random_image(1, 32, 32, seed=4)
    (stats,) = nodes["AdaINStyleStats"].compute(encoder, style)
    (features,) = nodes["AdaINEncode"].encode(encoder, frames, decoder=decoder)
    graph = {}
    for pool in (1, 3):
        (blended,) = nodes["AdaINBlend"].blend(features, stats, 1.0, pool_frames=pool)
        (graph[pool],) = nodes["AdaINDecode"].decode(decoder, blended)
    (clip,) = nodes["AdaINVideoStyleTransfer"].transfer(encoder, decoder, frames, style, 1.0, align_to_motion=False,
                                                        pool_frames=3, temporal_smoothing=0.0)
    torch.testing.assert_close(graph[3], clip, rtol=0, atol=1e-5)
    assert (graph[3] - graph[1]).abs().max() > 1e-3
    with pytest.raises(AdaINInputError, match="pool_frames above 1 .* set pool_frames to 1 or disconnect the mask"):
        nodes["AdaINBlend"].blend(features, stats, 1.0, mask=torch.ones(1, 48, 48), pool_frames=3)


def test_stable_mode_flickers_less_than_per_frame_on_a_pan(encoder, decoder):
    """A 3-px pan is not a multiple of the 8-px grid: per frame, the networks see each frame differently."""
    style = scene(64, 64, seed=5)
    frames = pan(3)
    per_frame = stylize_video(encoder, decoder, frames, style, RUNTIME, stability=Stability.off())
    stable = stylize_video(encoder, decoder, frames, style, RUNTIME, stability=Stability(pool_window=1))
    assert flicker(stable, 3) < 0.5 * flicker(per_frame, 3)


def test_zero_motion_gives_the_per_frame_result(encoder, decoder):
    """A still clip: with stability off it is per-frame AdaIN (pipeline.stylize); smoothing identical outputs changes
    nothing; pooling identical frames only the unbiased variance's n - 1 (of the pooled count)."""
    style = scene(48, 48, seed=3)
    frames = scene(64, 64).expand(3, -1, -1, -1).contiguous()
    reference = pipeline.stylize(encoder, decoder, frames, style, RUNTIME)
    off = stylize_video(encoder, decoder, frames, style, RUNTIME, stability=Stability.off())
    torch.testing.assert_close(off, reference, rtol=0, atol=1e-6)
    still = stylize_video(encoder, decoder, frames, style, RUNTIME,
                          stability=Stability(align=False, pool_window=1, smoothing=0.5))
    torch.testing.assert_close(still, reference, rtol=0, atol=1e-6)
    pooled = stylize_video(encoder, decoder, frames, style, RUNTIME,
                           stability=Stability(align=False, pool_window=3))
    torch.testing.assert_close(pooled, reference, rtol=0, atol=2e-3)


def test_one_frame_works(encoder, decoder):
    frame = scene(40, 56)
    style = scene(32, 32, seed=2)
    out = stylize_video(encoder, decoder, frame, style, RUNTIME)
    assert out.shape == frame.shape and torch.isfinite(out).all()
    torch.testing.assert_close(stylize_video(encoder, decoder, frame, style, RUNTIME, stability=Stability.off()),
                               pipeline.stylize(encoder, decoder, frame, style, RUNTIME), rtol=0, atol=1e-6)


def test_tiny_frames_work(encoder, decoder):
    frames = pan(1, frames=3, size=6)
    out = stylize_video(encoder, decoder, frames, scene(16, 16), RUNTIME, stability=Stability(smoothing=0.5))
    assert out.shape == frames.shape and torch.isfinite(out).all()


def test_frames_of_different_sizes_are_refused(encoder, decoder):
    frames = [scene(32, 48)[0], scene(32, 48)[0], scene(40, 48)[0]]
    with pytest.raises(AdaINInputError, match=r"frame 3 is 48x40 but frame 1 is 48x32; all frames of a clip must "
                                              r"have one size"):
        stylize_video(encoder, decoder, frames, scene(32, 32), RUNTIME)


def test_result_does_not_depend_on_the_chunks(encoder, decoder):
    frames, style = pan(5, frames=5, size=64), scene(32, 32, seed=1)
    stability = Stability(pool_window=3, smoothing=0.4)
    one = stylize_video(encoder, decoder, frames, style, RUNTIME, stability=stability, chunk=1)
    three = stylize_video(encoder, decoder, frames, style, RUNTIME, stability=stability, chunk=3)
    torch.testing.assert_close(one, three, rtol=0, atol=1e-5)


def test_a_new_shot_is_a_cut():
    first, second = scene(64, 64, seed=1)[0], scene(64, 64, seed=2)[0]
    assert is_cut(first, second, *estimate_shift(first, second), 0.08)
    assert not is_cut(first, first, 0, 0, 0.08)


def test_smoothing_never_blends_where_an_object_moved():
    """The occlusion check: a square moving over a still background is not the same surface where it was or is."""
    background = scene(64, 64)[0]
    stripes = (torch.arange(16) // 2 % 2).float().expand(3, 16, 16)  # 6 px on, its stripes are inverted
    previous, current = background.clone(), background.clone()
    previous[:, 20:36, 10:26] = stripes
    current[:, 20:36, 16:32] = stripes
    seen = same_surface(previous, current, 0, 0, 0.08)
    assert seen[20:36, 10:32].sum() == 0  # old and new place of the object
    assert seen[:, 40:].min() == 1.0  # the still background away from it


class _Stops(StandaloneRuntime):
    def __init__(self, after: int) -> None:
        super().__init__(torch.device("cpu"))
        self.after, self.done, self.reported = after, 0, []

    def progress(self, total):
        return lambda done: (self.reported.append(done), setattr(self, "done", done))

    def check_interrupt(self):
        if self.done >= self.after:
            raise InterruptedError("cancelled")


def test_progress_per_frame_and_cancel_between_frames(encoder, decoder):
    frames, style = pan(3, frames=4, size=48), scene(32, 32)
    runtime = _Stops(after=2)
    with pytest.raises(InterruptedError):
        stylize_video(encoder, decoder, frames, style, runtime, chunk=1)
    assert runtime.reported == [1, 2]


def test_node_runs_on_an_image_batch(encoder, decoder):
    node = NODE_CLASS_MAPPINGS["AdaINVideoStyleTransfer"]()
    frames = pan(3, frames=3, size=48).permute(0, 2, 3, 1)
    (out,) = node.transfer(encoder, decoder, frames, random_image(1, 32, 32), 1.0)
    assert out.shape == frames.shape and torch.isfinite(out).all()
    with pytest.raises(AdaINInputError, match="temporal_smoothing"):
        node.transfer(encoder, decoder, frames, random_image(1, 32, 32), 1.0, temporal_smoothing=1.5)


def test_refine_is_measured_once_on_the_first_frame(encoder, decoder):
    """style_refine in the video path: the first frame's refined style (pipeline.refined_style, as the one-node
    transfer makes it) is the style for the whole clip; with a style per frame, its correction applies to every
    row; boost and refine together refine the boosted style, as the one-node transfer does."""
    frames, style = pan(3, frames=3, size=48), scene(32, 32, seed=4)
    stats = pipeline.style_statistics(encoder, style, RUNTIME)
    refined = pipeline.refined_style(encoder, decoder, frames[:1], stats, 1, RUNTIME)
    features = pipeline.encode(encoder, frames, RUNTIME, levels=decoder.network.levels)
    expected = pipeline.decode(decoder, pipeline.blend(features, refined, 0.8), RUNTIME)
    got = stylize_video(encoder, decoder, frames, style, RUNTIME, 0.8, stability=Stability.off(), refine=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    same = stylize_video(encoder, decoder, frames, style.expand(3, -1, -1, -1), RUNTIME, 0.8,
                         stability=Stability.off(), refine=1)
    torch.testing.assert_close(same, got, rtol=0, atol=1e-5)
    both = stylize_video(encoder, decoder, frames[:1], style, RUNTIME, 0.8, stability=Stability.off(), boost=0.5,
                         refine=1)
    torch.testing.assert_close(both, pipeline.stylize(encoder, decoder, frames[:1], style, RUNTIME, 0.8, boost=0.5,
                                                      refine=1), rtol=0, atol=1e-5)
    with pytest.raises(AdaINInputError, match="style_refine"):
        stylize_video(encoder, decoder, frames, style, RUNTIME, refine=-1)
    node = NODE_CLASS_MAPPINGS["AdaINVideoStyleTransfer"]()
    host = node.transfer(encoder, decoder, frames.permute(0, 2, 3, 1), style.permute(0, 2, 3, 1), 0.8,
                         align_to_motion=False, pool_frames=1, temporal_smoothing=0.0, style_refine=1)[0]
    torch.testing.assert_close(host.permute(0, 3, 1, 2), got, rtol=0, atol=1e-5)


def _allocations_of(size: int, run) -> int:
    """How many tensors of exactly ``size`` bytes ``run`` allocates."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    return sum(1 for e in prof.events() if e.self_cpu_memory_usage == size)  # each allocation's own bytes


def test_node_holds_one_copy_of_the_clip(encoder, decoder):
    """Bounded memory for long clips: the node's only clip-sized allocation is its result (the input is converted a
    chunk at a time, and the result is handed over as it was written, no clamp or layout copy). 7 frames: no weight
    or activation of these networks has the clip's size (their channels are powers of 2)."""
    node = NODE_CLASS_MAPPINGS["AdaINVideoStyleTransfer"]()
    frames = pan(3, frames=7, size=40).permute(0, 2, 3, 1).contiguous()
    style = random_image(1, 32, 32)
    found = []
    count = _allocations_of(frames.numel() * 4, lambda: found.append(node.transfer(
        encoder, decoder, frames, style, 1.0)[0]))
    assert count == 1
    (out,) = found
    assert out.shape == frames.shape and out.is_contiguous() and 0 <= float(out.min()) <= float(out.max()) <= 1
    reference = stylize_video(encoder, decoder, frames.permute(0, 3, 1, 2), style.permute(0, 3, 1, 2), RUNTIME)
    torch.testing.assert_close(out, reference.permute(0, 2, 3, 1), rtol=0, atol=0)


def test_boost_is_measured_once_on_the_first_frame(encoder, decoder):
    """style_boost in the video path: the first frame's one-node boost (pipeline.boosted_style of its transfer at
    alpha 1) is the style for the whole clip; with stability off each frame is then that style's plain transfer.
    With a style per frame, the first frame's correction shifts the means and scales the stds of every row."""
    frames, style = pan(3, frames=3, size=48), scene(32, 32, seed=4)
    stats = pipeline.style_statistics(encoder, style, RUNTIME)
    first = pipeline.stylize(encoder, decoder, frames[:1], style, RUNTIME, 1.0)
    boosted = pipeline.boosted_style(encoder, decoder, stats, first, 0.5, RUNTIME)
    levels = decoder.network.levels
    features = pipeline.encode(encoder, frames, RUNTIME, levels=levels)
    expected = pipeline.decode(decoder, pipeline.blend(features, boosted, 0.8), RUNTIME)
    got = stylize_video(encoder, decoder, frames, style, RUNTIME, 0.8, stability=Stability.off(), boost=0.5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(got, stylize_video(encoder, decoder, frames, style, RUNTIME, 0.8,
                                                 stability=Stability.off()))
    same = stylize_video(encoder, decoder, frames, style.expand(3, -1, -1, -1), RUNTIME, 0.8,
                         stability=Stability.off(), boost=0.5)
    torch.testing.assert_close(same, got, rtol=0, atol=1e-5)
    with pytest.raises(AdaINInputError, match="style_boost"):
        stylize_video(encoder, decoder, frames, style, RUNTIME, boost=-0.5)
    node = NODE_CLASS_MAPPINGS["AdaINVideoStyleTransfer"]()
    host = node.transfer(encoder, decoder, frames.permute(0, 2, 3, 1), style.permute(0, 2, 3, 1), 0.8,
                         align_to_motion=False, pool_frames=1, temporal_smoothing=0.0, style_boost=0.5)[0]
    torch.testing.assert_close(host.permute(0, 3, 1, 2), got, rtol=0, atol=1e-5)
