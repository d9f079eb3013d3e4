"""The benchmark's pure-torch parts: the image<->latent map, metrics and the digit classifier."""
import math
import os

import pytest
import torch

from benchmarks.metrics import psnr_per_image, ssim
from benchmarks.reference import data
from benchmarks.reference.classifier import WEIGHTS as CLASSIFIER_WEIGHTS, frechet_distance, load


def test_latent_map_is_invertible_and_wan_shaped():
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    latent = data.to_latent(images)
    assert latent.shape == (5, 16, 1, 8, 8)
    assert torch.equal(data.from_latent(latent), images)
    assert torch.equal(data.from_latent(latent[:, :, 0]), images)


def test_psnr_and_ssim():
    a = torch.rand(3, 1, 28, 28) * 2 - 1
    b = a.clone()
    b[1] += 0.1
    psnr = psnr_per_image(b, a)
    assert math.isinf(psnr[0]) and math.isinf(psnr[2])
    assert psnr[1] == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-4)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(torch.rand(3, 1, 28, 28), a) < 0.5


def test_frechet_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    same = frechet_distance(a, b)
    shifted = frechet_distance(a, b + 1.0)
    assert shifted == pytest.approx(same + 8.0, abs=0.5) and same < 0.5


def test_shipped_classifier_recognises_held_out_digits():
    try:
        _, (test_x, test_y) = data.split(*data.load_mnist())
    except data.DatasetUnavailable as err:
        pytest.skip(str(err))
    assert os.path.isfile(CLASSIFIER_WEIGHTS)
    with torch.no_grad():
        accuracy = float((load()(test_x).argmax(1) == test_y).float().mean())
    assert accuracy >= 0.97
    assert len(test_y) == 500 and torch.bincount(test_y).tolist() == [50] * 10
