"""How close a sampled latent stays to the uncached one: the quality term of BlockDance-Ada's reward
(reward = compute term + lambda * quality) and the fidelity numbers calibration reports.

A quality is any `(output, reference) -> float` in [0, 1], higher = closer; training takes one as a
parameter. Two ship, both on the latent (decoding needs the VAE, which the sampler graph does not have):
`latent_psnr` (PSNR / 60 dB, capped at 1) and `latent_ssim` (SSIM, clamped to [0, 1])."""
from __future__ import annotations

import math
from typing import Callable, Dict

import torch
import torch.nn.functional as F

MAX_PSNR = 60.0   # dB: closer than this counts as identical


def latent_psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over samples of the PSNR of a latent against the reference, peak = the reference's range."""
    out, ref = output.detach().float().flatten(1), reference.detach().float().flatten(1)
    mse = ((out - ref) ** 2).mean(1)
    peak = (ref.max(1).values - ref.min(1).values).clamp_min(1e-12)
    psnr = 10 * torch.log10(peak ** 2 / mse.clamp_min(1e-30))
    psnr[mse == 0] = math.inf
    return float(psnr.mean())


def latent_ssim(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004) over samples, channels and frames of [B, C, (T,) H, W] latents,
    with a Gaussian window (sigma 1.5) of up to 7 latent pixels, so that small latents fit, and each
    sample's reference range as the data range."""
    x, y = output.detach().double(), reference.detach().double()
    if x.shape != y.shape or x.dim() < 4:
        raise ValueError(f"latent_ssim compares [B, C, (T,) H, W] latents of one shape; got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    peak = (y.flatten(1).max(1).values - y.flatten(1).min(1).values).clamp_min(1e-12)
    h, w = x.shape[-2:]
    size = min(7, h, w)
    size -= 1 - size % 2   # odd, so the window has a centre
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, size, size)
    rows = x.shape[0]
    x, y = x.reshape(rows, -1, h, w), y.reshape(rows, -1, h, w)
    c1 = ((0.01 * peak) ** 2).view(rows, 1, 1, 1)
    c2 = ((0.03 * peak) ** 2).view(rows, 1, 1, 1)
    planes = x.shape[1]
    x, y = x.reshape(rows * planes, 1, h, w), y.reshape(rows * planes, 1, h, w)
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x ** 2
    var_y = F.conv2d(y * y, window) - mu_y ** 2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    shape = (rows, planes) + mu_x.shape[-2:]
    mu_x, mu_y, var_x, var_y, cov = (t.reshape(shape) for t in (mu_x, mu_y, var_x, var_y, cov))
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def psnr_quality(output: torch.Tensor, reference: torch.Tensor) -> float:
    return min(latent_psnr(output, reference), MAX_PSNR) / MAX_PSNR


def ssim_quality(output: torch.Tensor, reference: torch.Tensor) -> float:
    return min(max(latent_ssim(output, reference), 0.0), 1.0)


QUALITIES: Dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "latent_psnr": psnr_quality,
    "latent_ssim": ssim_quality,
}


def get(name: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    if name not in QUALITIES:
        raise ValueError(f"quality={name!r} is not supported; allowed: {', '.join(QUALITIES)}")
    return QUALITIES[name]
