"""The README Results section is computed from the benchmark JSON, winners included."""
import math

from benchmarks.readme_results import section, winner


def row(method, speedup, psnr, sampler="euler", **params):
    label = method + "".join(f" {k}={v}" for k, v in params.items())  # as benchmarks.run writes it
    return {"method": method, "sampler": sampler, "params": params, "label": label, "speedup": speedup,
            "ideal_speedup": speedup,
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


def test_speed_section_and_markers():
    from benchmarks.readme_results import replace_between, speed_section
    import pytest
    rows = [{"family": "wan21", "config": c, "blocks": 30, "seconds": s, "speedup": 1.9 / s, "ideal_speedup": i,
             "efficiency": 1.9 / s / i, "overhead_ms_per_step": o, "device": "CPU", "threads": 1, "steps": 20,
             "side_px": 128, "dtype": "float32"} for c, s, i, o in (("uncached", 1.9, 1.0, None), ("N=1", 1.91, 1.0, 0.5))]
    text = speed_section(rows)
    assert "(CPU, float32, 1 thread(s), 20 euler steps" in text and "| wan21 | 30 | 128 px | N=1 | 1.910 |" in text
    assert "+0.50 ms |" in text
    assert replace_between("a <!--s--> old <!--e--> b", "<!--s-->", "<!--e-->", "new", "R") == "a <!--s-->\nnew\n<!--e--> b"
    with pytest.raises(SystemExit, match="no <!--s-->"):
        replace_between("no markers", "<!--s-->", "<!--e-->", "new", "R")
