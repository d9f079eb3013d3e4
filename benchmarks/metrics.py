"""Fidelity and sample-quality metrics on decoded digit images in [-1, 1]."""
from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F


def psnr_per_image(images: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB per image; +inf where an image is bit-identical to its reference."""
    mse = ((images.double() - reference.double()) ** 2).flatten(1).mean(1)
    return torch.where(mse == 0, torch.full_like(mse, math.inf), 10 * torch.log10(data_range ** 2 / mse))


def ssim(images: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) over single-channel images."""
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 11, 11)
    x, y = images.double(), reference.double()
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x ** 2
    var_y = F.conv2d(y * y, window) - mu_y ** 2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def quality(images: torch.Tensor, labels: torch.Tensor, classifier, real_features: torch.Tensor) -> Dict[str, float]:
    """Classifier accuracy against the intended classes and FD-cls to real test digits."""
    from .reference.classifier import frechet_distance
    with torch.no_grad():
        feats = classifier.features(images.float())
        acc = float((classifier.head(feats).argmax(1) == labels).float().mean())
    return {"cls_acc": acc, "fd_cls": frechet_distance(feats, real_features)}
