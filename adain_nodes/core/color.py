"""Colour preservation (paper, section 7.3): colour statistics matching and luminance-only transfer."""
from __future__ import annotations

import torch
from torch import Tensor

# ITU-R BT.601 luma, the Y of YIQ: its chroma axes sum to zero, so adding the same value to
# R, G and B changes the luminance only.
LUMA = (0.299, 0.587, 0.114)


def _sqrtm(cov: Tensor, inverse: bool = False, eps: float = 1e-8) -> Tensor:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(0.0) + eps
    diag = values.rsqrt() if inverse else values.sqrt()
    return vectors @ torch.diag_embed(diag) @ vectors.transpose(-1, -2)


def _mean_cov(pixels: Tensor) -> tuple[Tensor, Tensor]:
    mean = pixels.mean(dim=2, keepdim=True)
    centred = pixels - mean
    cov = centred @ centred.transpose(1, 2) / max(pixels.shape[2] - 1, 1)
    return mean, cov


def match_color(source: Tensor, reference: Tensor, eps: float = 1e-5) -> Tensor:
    """Affinely recolour ``source`` ``[B, 3, H, W]`` so its RGB mean and covariance equal ``reference``'s.

    x' = C_r^(1/2) C_s^(-1/2) (x - mu_s) + mu_r, computed in float64 for stable 3x3 roots. The
    two images may differ in size; a reference batch of 1 applies to every source image.
    """
    b, c, h, w = source.shape
    src = source.flatten(2).double()
    ref = reference.flatten(2).double().expand(b, -1, -1) if reference.shape[0] == 1 else reference.flatten(2).double()
    eye = torch.eye(c, dtype=torch.float64, device=source.device) * eps
    mu_s, cov_s = _mean_cov(src)
    mu_r, cov_r = _mean_cov(ref)
    transform = _sqrtm(cov_r + eye) @ _sqrtm(cov_s + eye, inverse=True)
    out = transform @ (src - mu_s) + mu_r
    return out.reshape(b, c, h, w).to(source.dtype).clamp(0.0, 1.0)


def luminance(image: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of an RGB ``[B, 3, H, W]`` image."""
    weights = torch.tensor(LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def luminance_as_rgb(image: Tensor, like: Tensor | None = None) -> Tensor:
    """Grey RGB image of ``image``'s luma; with ``like``, its mean and std are matched to ``like``'s luma.

    Matching the style's luminance histogram to the content's first is what the luminance-only
    method of Gatys et al. (2016) does, so the content keeps its overall brightness.
    """
    y = luminance(image)
    if like is not None:
        target = luminance(like)
        # population std: defined for a single pixel too (a 1x1 image must not give NaN)
        ys, ym = torch.std_mean(y, dim=(2, 3), keepdim=True, correction=0)
        ts, tm = torch.std_mean(target, dim=(2, 3), keepdim=True, correction=0)
        y = ((y - ym) / (ys + 1e-6) * ts + tm).clamp(0.0, 1.0)
    return y.expand(-1, 3, -1, -1)


def transfer_luminance(content: Tensor, stylized: Tensor) -> Tensor:
    """Keep the content's chroma and take the stylized image's luminance (YIQ recombination)."""
    return (content + luminance(stylized) - luminance(content)).clamp(0.0, 1.0)
