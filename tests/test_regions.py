"""Region blends compose exactly: the sum of each region's weighted target plus the content where no mask covers
it (normalised where masks overlap beyond 1), for soft and off-grid masks, in any order."""
from __future__ import annotations

import itertools

import torch

from adain_nodes import pipeline
from adain_nodes.host.runtime import StandaloneRuntime
from adain_nodes.models.networks import SkipDecoder
from conftest import random_image

RUNTIME = StandaloneRuntime(torch.device("cpu"))
SIZE = 64
EPS = 1e-5


def expected_levels(content: dict[str, torch.Tensor], regions) -> dict[str, torch.Tensor]:
    """The composition computed by hand in float64: block means of each mask on each level's grid, weighted
    statistics, AdaIN, alpha, then the weighted sum."""
    result = {}
    for name, level in content.items():
        c = level.double()[0]  # [C, h, w]
        h, w = c.shape[-2:]
        stride = SIZE // h
        weighted, cover = torch.zeros_like(c), torch.zeros(h, w, dtype=torch.float64)
        for mask, style, alpha in regions:
            m = mask.double().reshape(h, stride, w, stride).mean(dim=(1, 3))  # the mask's share of each cell
            total = m.sum()
            mean = (c * m).sum(dim=(1, 2)) / total
            var = ((c - mean[:, None, None]) ** 2 * m).sum(dim=(1, 2)) / max(float(total) - 1.0, 1.0)
            std = (var + EPS).sqrt()
            s_mean, s_std = (t[0].double() for t in style.levels[name])
            target = (c - mean[:, None, None]) / std[:, None, None] * s_std[:, None, None] + s_mean[:, None, None]
            target = c + alpha * (target - c)
            weighted += m * target
            cover += m
        result[name] = (weighted + (1.0 - cover).clamp(min=0.0) * c) / cover.clamp(min=1.0)
    return result


def test_soft_and_off_grid_regions_compose_in_any_order(encoder):
    content = random_image(1, SIZE, SIZE, seed=21).permute(0, 3, 1, 2)
    features = pipeline.encode(encoder, content, RUNTIME, levels=SkipDecoder.levels)
    styles = [pipeline.style_statistics(encoder, random_image(1, 48, 48, seed=s).permute(0, 3, 1, 2), RUNTIME)
              for s in (22, 23, 24)]
    columns = torch.arange(SIZE, dtype=torch.float32)
    soft = (columns / (SIZE - 1)).expand(SIZE, SIZE).clone()  # a ramp: soft everywhere
    edge = (columns < 36).float().expand(SIZE, SIZE).clone()  # an edge inside a relu4_1 cell (8 px)
    rows = torch.arange(SIZE, dtype=torch.float32)[:, None]
    blob = torch.sigmoid((rows - 40) / 6).expand(SIZE, SIZE).clone()  # soft, overlapping both
    regions = [(soft, styles[0], 1.0), (edge, styles[1], 0.7), (blob, styles[2], 0.4)]
    expected = expected_levels(features.content, regions)
    results = []
    for order in itertools.permutations(regions):
        chained = features
        for mask, style, alpha in order:
            chained = pipeline.blend(chained, style, alpha, mask[None])
        results.append(chained.levels)
        for name, level in chained.levels.items():
            error = (level.double()[0] - expected[name]).abs().max()
            assert error <= 1e-4 * expected[name].abs().max(), (name, order, float(error))
    first = results[0]
    for other in results[1:]:
        for name in first:
            assert torch.allclose(other[name], first[name], atol=1e-5)


def test_complementary_soft_masks_leave_no_content(encoder):
    """Masks m and 1 - m cover everything: no trace of the unstylized content is left, even where m is soft."""
    content = random_image(1, SIZE, SIZE, seed=31).permute(0, 3, 1, 2)
    features = pipeline.encode(encoder, content, RUNTIME)
    a, b = (pipeline.style_statistics(encoder, random_image(1, 32, 32, seed=s).permute(0, 3, 1, 2), RUNTIME)
            for s in (32, 33))
    m = (torch.arange(SIZE, dtype=torch.float32) / (SIZE - 1)).expand(1, SIZE, SIZE)
    both = pipeline.blend(pipeline.blend(features, a, 1.0, m), b, 1.0, 1.0 - m)
    expected = expected_levels(features.content, [(m[0], a, 1.0), (1.0 - m[0], b, 1.0)])
    assert torch.allclose(both.features.double()[0], expected["relu4_1"], atol=1e-4)
    assert float(both.cover["relu4_1"].min()) > 1 - 1e-6  # fully covered
