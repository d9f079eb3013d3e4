"""The generated results (docs/results.md) and the README's settings table are computed from the
benchmark JSON, winners included."""
import math
import os
import shutil

from benchmarks.readme_results import bar, section, winner


def row(method, speedup, psnr, sampler="euler", **params):
    label = method + "".join(f" {k}={v}" for k, v in params.items())  # as benchmarks.run writes it
    return {"method": method, "sampler": sampler, "params": params, "label": label, "speedup": speedup,
            "ideal_speedup": speedup,
            "efficiency": 1.0, "speedup_wall": speedup, "psnr_mean": psnr, "psnr_min": psnr - 2, "ssim": 0.9,
            "cls_acc": 1.0, "fd_cls": 100.0}


ROWS = [
    dict(row("baseline", 1.0, math.inf), timing_noise=0.012, rank_correlation=-0.85),
    row("blockdance", 1.25, 35.0, N=2, depth=0.75),
    row("fewer_steps", 1.22, 36.0, steps=24),
    row("fewer_steps", 1.55, 30.0, steps=20),
    row("lazycache", 2.1, 20.0, reuse_threshold=0.1),
    row("calibrated", 2.05, 40.0, target_speedup=2.0),
    row("calibrated", 2.6, 18.0, target_speedup=2.5),
]


def test_winner_is_the_most_faithful_row_at_least_that_fast():
    assert winner(ROWS, 1.2)["method"] == "calibrated" and winner(ROWS, 1.2)["params"] == {"target_speedup": 2.0}
    assert winner(ROWS, 2.1)["method"] == "lazycache"
    assert winner(ROWS, 2.5)["params"] == {"target_speedup": 2.5}
    assert winner(ROWS, 3.0) is None


def test_section_lists_rows_winners_verdict_noise_and_rank_correlation():
    text = section(ROWS, "header", "![plot](docs/x.png)")
    assert "| blockdance N=2 depth=0.75 | 1.25x |" in text
    assert "within 1.2% of their mean" in text and "over every reuse configuration: -0.850" in text
    assert "| euler | calibrated target_speedup=2.0 (2.05x, 40.0 dB) | calibrated target_speedup=2.0 (2.05x, 40.0 dB) | " \
           "calibrated target_speedup=2.0 (2.05x, 40.0 dB) | calibrated target_speedup=2.5 (2.60x, 18.0 dB) | none this fast |" in text
    assert "Under euler the most faithful choice is calibrated at 1.2x, 1.5x, 2.0x, 2.5x." in text
    assert text.endswith("![plot](docs/x.png)")


def test_bar_names_where_the_calibrated_schedule_wins_and_loses():
    text = bar(ROWS, "euler")
    assert "2.0x: wins by 20.0 dB over lazycache reuse_threshold=0.1" in text
    assert "2.5x: 18.0 dB, no rival this fast" in text and "3.0x: no calibrated row this fast" in text
    slower_rival = ROWS + [row("fewer_steps", 2.7, 19.0, steps=11)]
    assert "2.5x: LOSES to fewer_steps steps=11 (19.0 vs 18.0 dB)" in bar(slower_rival, "euler")


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


def test_per_sample_rows_get_their_own_table_and_the_ada_margin():
    ada = dict(row("ada", 1.9, 50.0, target_speedup=2.0), ideal_min=1.9, ideal_max=2.1, per_sample=True)
    static = dict(row("calibrated", 1.9, 52.0, target_speedup=2.0, per_sample=True), ideal_min=2.0, ideal_max=2.0,
                  per_sample=True)
    text = section(ROWS + [ada, static], "header")
    assert "| euler | ada target_speedup=2.0 | 1.90x | 1.90x | 1.90-2.10x | 50.0 | 48.0 | 1.00 |" in text
    assert "Ada against the static calibrated schedule at the same target: euler 2.0x: -2.0 dB mean, -2.0 dB worst." in text
    assert "| ada target_speedup=2.0 | 1.90x |" not in text.split("**Per-instance")[0]   # not in the batched table


def test_per_sample_rows_are_set_against_fewer_steps_at_the_same_or_lower_compute():
    """Per method, the most faithful batched fewer-steps row whose ideal speedup is at least the row's."""
    ada = dict(row("ada", 1.5, 50.0, target_speedup=1.5), ideal_min=1.5, ideal_max=1.5, per_sample=True)
    gate = dict(row("gate", 1.2, 33.0, target_speedup=1.25), ideal_min=1.1, ideal_max=1.3, per_sample=True)
    text = section(ROWS + [ada, gate], "header")
    # ada at 1.5x: only steps=20 (1.55x) is as cheap; gate at 1.2x: steps=24 (36 dB) beats steps=20 (30 dB)
    assert "ada against fewer steps at the same or lower compute: euler 1.5x: +20.0 dB (vs fewer_steps steps=20)." in text
    assert "gate against fewer steps at the same or lower compute: euler 1.25x: -3.0 dB (vs fewer_steps steps=24)." in text


def test_settings_table_names_the_most_faithful_choice_per_speed_beside_fewer_steps_and_the_window():
    from benchmarks.readme_results import settings_section
    ancestral = [dict(r, sampler="euler_ancestral", psnr_mean=45.0 if r["method"] == "lazycache" else r["psnr_mean"] - 5)
                 for r in ROWS]
    text = settings_section([("Tiny", ROWS + ancestral)])
    lines = text.splitlines()
    assert lines[0] == "| speed at least | Tiny · euler | Tiny · euler_ancestral |"
    # at 1.2x: calibrated 2.0 (40 dB) beats fewer steps 24 (36 dB) and the window (N=2 at 1.25x, 35 dB)
    # (under euler_ancestral LazyCache at 2.1x, 45 dB, is the most faithful up to 2.0x)
    assert lines[2] == ("| 1.2x | **calibrated target_speedup=2.0**: 40.0 dB; fewer steps 36.0 dB; patch window 35.0 dB | "
                        "**lazycache reuse_threshold=0.1**: 45.0 dB; fewer steps 31.0 dB; patch window 30.0 dB |")
    # at 2.5x only the 2.5 schedule is fast enough; nothing reaches 2.5x otherwise
    assert "| 2.5x | **calibrated target_speedup=2.5**: 18.0 dB; patch window: not this fast |" in lines[5]
    assert "calibrated schedule was the most faithful choice in 5 of 12 cells" in text
    assert "beat fewer steps in 0 of the 2 cells where both reach the speed" in text


def test_regenerating_from_the_committed_json_reproduces_docs_results_and_the_readme_settings(tmp_path):
    """main() writes the results and speed tables into docs/results.md (plots beside it) and only the
    settings table into the README; from the committed JSONs both come out exactly as committed."""
    from benchmarks.readme_results import ROOT, main
    docs = os.path.join(ROOT, "docs")
    for name in ("README.md", os.path.join("docs", "results.md")):
        shutil.copy(os.path.join(ROOT, name), tmp_path / os.path.basename(name))
    main([os.path.join(docs, "results_wan21.json"), os.path.join(docs, "results_hunyuan_image21.json"),
          "--speed", os.path.join(docs, "speed.json"), os.path.join(docs, "speed_gpu.json"),
          "--readme", str(tmp_path / "README.md"), "--results-doc", str(tmp_path / "results.md")])
    for written, committed in (("results.md", os.path.join(docs, "results.md")),
                               ("README.md", os.path.join(ROOT, "README.md"))):
        with open(tmp_path / written) as f, open(committed) as g:
            assert f.read() == g.read(), written
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "pareto_hunyuan_image21.png", "pareto_wan21.png", "samples_hunyuan_image21.png", "samples_wan21.png"]


def test_side_by_side_names_the_pack_best_row_each_peer_and_the_winner_per_speed():
    from benchmarks.readme_results import side_by_side
    rows = ROWS + [row("spectrum", 2.2, 41.0, alpha=0.75), row("taylorseer", 3.1, 30.0, interval=4),
                   row("calibrated_forecast", 3.2, 33.0, target_speedup=4.0)]
    lines = side_by_side(rows, "euler").splitlines()
    assert lines[2] == "| speed | pack | Spectrum | TaylorSeer | EasyCache | LazyCache | fewer steps | winner |"
    # 2x: Spectrum (2.2x, 41 dB) beats the pack's best row that fast (calibrated 2.0 at 2.05x, 40 dB)
    assert lines[5] == ("| 2.0x | 40.0 (calibrated target_speedup=2.0, 2.05x) | 41.0 | 30.0 | none | 20.0 | none | "
                        "Spectrum |")
    # 3x: the forecasting schedule (3.2x, 33 dB) beats TaylorSeer (3.1x, 30 dB); nothing else is that fast
    assert lines[6] == ("| 3.0x | 33.0 (calibrated_forecast target_speedup=4.0, 3.20x) | none | 30.0 | none | none | "
                        "none | pack |")
    assert lines[8] == "| 5.0x | none | none | none | none | none | none | none this fast |"


def test_settings_cells_name_the_forecasting_peers_beside_the_winner():
    from benchmarks.readme_results import settings_section
    rows = ROWS + [row("spectrum", 2.2, 39.0, alpha=0.75), row("taylorseer", 1.3, 33.0, interval=4)]
    line = settings_section([("Tiny", rows)]).splitlines()[2]   # 1.2x
    assert line.startswith("| 1.2x | **calibrated target_speedup=2.0**: 40.0 dB;")
    assert "Spectrum 39.0 dB; TaylorSeer 33.0 dB" in line
