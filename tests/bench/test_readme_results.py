"""The README Results section is computed from the benchmark JSON, winners included."""
import math

from benchmarks.readme_results import section, winner


def row(method, speedup, psnr, sampler="euler", **params):
    return {"method": method, "sampler": sampler, "params": params, "speedup": speedup, "ideal_speedup": speedup,
            "efficiency": 1.0, "speedup_wall": speedup, "psnr_mean": psnr, "psnr_min": psnr - 2, "ssim": 0.9,
            "cls_acc": 1.0, "fd_cls": 100.0}


ROWS = [
    dict(row("baseline", 1.0, math.inf), timing_noise=0.012),
    row("blockdance", 1.25, 35.0, N=2, depth=0.75),
    row("fewer_steps", 1.22, 36.0, steps=24),
    row("fewer_steps", 1.45, 30.0, steps=20),
    row("lazycache", 1.9, 20.0, reuse_threshold=0.1),
]


def test_winner_is_the_most_faithful_row_at_least_that_fast():
    assert winner(ROWS, 1.2)["method"] == "fewer_steps" and winner(ROWS, 1.2)["params"] == {"steps": 24}
    assert winner(ROWS, 1.24)["method"] == "blockdance"
    assert winner(ROWS, 1.6)["method"] == "lazycache"
    assert winner(ROWS, 3.0) is None


def test_section_lists_rows_winners_verdict_and_noise():
    text = section(ROWS, "header")
    assert "| blockdance N=2 depth=0.75 | 1.25x |" in text
    assert "within 1.2% of their mean" in text
    assert "| euler | fewer_steps steps=24 (1.22x, 36.0 dB) | fewer_steps steps=20 (1.45x, 30.0 dB) | " \
           "lazycache reuse_threshold=0.1 (1.90x, 20.0 dB) |" in text
    assert "Under euler the most faithful choice is fewer_steps at 1.2x, 1.4x; lazycache at 1.6x." in text
