"""The fidelity terms Ada's reward can use: identical latents score 1, and the score falls as the
latent moves away from the reference, for images, tiny latents and video alike."""
import math

import pytest
import torch

from blockdance_core.quality import MAX_PSNR, get, latent_psnr, latent_ssim, psnr_quality, ssim_quality


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (1, 64, 4, 4), (1, 16, 3, 8, 8), (1, 4, 1, 1)])
def test_identical_latents_score_one_and_noise_lowers_both_scores(shape):
    torch.manual_seed(0)
    ref = torch.randn(shape)
    assert latent_psnr(ref, ref) == math.inf and psnr_quality(ref, ref) == 1.0
    assert latent_ssim(ref, ref) == pytest.approx(1.0) and ssim_quality(ref, ref) == pytest.approx(1.0)
    small, large = ref + 0.01 * torch.randn(shape), ref + 0.3 * torch.randn(shape)
    assert 1.0 > psnr_quality(small, ref) > psnr_quality(large, ref) > 0.0
    if shape[-1] > 1:   # a 1x1 latent has no structure for SSIM's window beyond its mean
        assert 1.0 > ssim_quality(small, ref) > ssim_quality(large, ref)


def test_psnr_matches_its_definition_and_the_quality_caps_at_max_psnr():
    ref = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    out = ref + torch.tensor([[[[0.1, 0.0], [0.0, 0.0]]]])
    assert latent_psnr(out, ref) == pytest.approx(10 * math.log10(1.0 / (0.01 / 4)))
    assert psnr_quality(ref + 1e-9, ref) == 1.0 and MAX_PSNR == 60.0


def test_named_qualities_and_clear_errors():
    assert get("latent_psnr") is psnr_quality and get("latent_ssim") is ssim_quality
    with pytest.raises(ValueError, match="quality='lpips' is not supported; allowed: latent_psnr, latent_ssim"):
        get("lpips")
    with pytest.raises(ValueError, match=r"got \(1, 4, 8, 8\) and \(1, 4, 4, 4\)"):
        latent_ssim(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4))
