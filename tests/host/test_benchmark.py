"""`python -m benchmarks.run --quick` end to end on the shipped reference model."""
import json
import math
import os

import pytest

# The whole quick benchmark (about 2 minutes) and its speed checks: the timing pass (scripts/test.sh).
pytestmark = pytest.mark.timing

CONTRACT_KEYS = {"model", "method", "sampler", "params", "speedup", "ideal_speedup", "efficiency", "psnr_mean",
                 "psnr_min", "ssim", "cls_acc", "fd_cls", "predicted_error"}
METHODS = {"baseline", "blockdance", "delta", "calibrated", "calibrated_forecast", "calibrated_ranges", "spectrum", "taylorseer",
           "easycache", "lazycache", "fewer_steps", "ada", "gate", "delta_dit"}


@pytest.fixture(scope="module")
def quick_results(comfy, tmp_path_factory):
    from benchmarks import run
    from benchmarks.reference import models
    if not os.path.isfile(models.get("wan21").weights):
        pytest.fail(f"the reference model {models.get('wan21').weights} is not in the repository")
    out = tmp_path_factory.mktemp("bench")
    assert run.main(["--quick", "--json", str(out / "results.json")]) == 0
    with open(out / "results.json") as f:
        return json.load(f), out


def test_quick_benchmark_writes_the_contract(quick_results):
    rows, out = quick_results
    assert rows and all(CONTRACT_KEYS <= set(r) for r in rows)
    assert {r["method"] for r in rows} == METHODS and {r["model"] for r in rows} == {"wan21"}
    assert {r["sampler"] for r in rows} == {"euler", "euler_ancestral"}
    assert (out / "pareto_wan21.png").stat().st_size > 0 and (out / "samples_wan21.png").stat().st_size > 0


def test_calibrated_rows_use_the_shipped_schedules_and_are_ranked(quick_results):
    rows, _ = quick_results
    calibrated = [r for r in rows if r["method"] == "calibrated" and not r.get("per_sample")]
    assert [r["sampler"] for r in calibrated] == ["euler", "euler_ancestral"]
    for r in calibrated:
        assert r["params"] == {"target_speedup": 2.0} and r["ideal_speedup"] > 1.5 and r["predicted_error"] > 0
        same_speed = [f for f in rows if f["sampler"] == r["sampler"] and f["method"] == "fewer_steps" and not f.get("per_sample")
                      and f["ideal_speedup"] >= r["ideal_speedup"] - 1e-6]
        assert same_speed and r["psnr_mean"] > max(f["psnr_mean"] for f in same_speed), r
    for baseline in (r for r in rows if r["method"] == "baseline" and not r.get("per_sample")):
        assert baseline["rank_correlation"] < -0.5   # more predicted error, less fidelity


def test_no_reuse_rows_are_bit_identical(quick_results):
    rows, _ = quick_results
    controls = [r for r in rows if r["method"] in ("blockdance", "delta") and r["params"]["N"] == 1]
    assert len(controls) == 4
    for r in controls:
        assert math.isinf(r["psnr_mean"]) and r["ideal_speedup"] == 1.0 and r["ssim"] == pytest.approx(1.0)
    for r in controls:  # the patch machinery alone: a gross overhead (or a broken timer) shows here
        assert abs(r["efficiency"] - 1) < 0.1, r


def test_timing_reports_its_noise_floor(quick_results):
    rows, _ = quick_results
    baselines = [r for r in rows if r["method"] == "baseline"]
    assert len(baselines) == 4   # batched and per-sample, two samplers and all(r["timing_noise"] < 0.1 for r in baselines)
    assert all(r["speedup_wall"] > 0 and r["seconds"] > 0 for r in rows)


def test_reuse_rows_skip_work_and_stay_close(quick_results):
    rows, _ = quick_results
    for r in rows:
        if r["method"] in ("blockdance", "delta") and r["params"]["N"] > 1:
            assert r["ideal_speedup"] > 1.1 and r["psnr_mean"] < math.inf
            if r["sampler"] == "euler" and r["params"]["N"] == 2:
                assert r["psnr_mean"] > 25, r  # one reuse step per pair stays close to the uncached output
        if r["method"] == "fewer_steps":  # matched to the cost of a caching configuration of its sampler
            costs = {round(16 / c["ideal_speedup_fidelity"]) for c in rows
                     if c["sampler"] == r["sampler"] and c["method"] not in ("baseline", "fewer_steps")}
            assert r["params"]["steps"] in costs and r["params"]["steps"] < 16, r


def test_delta_dit_rows_match_their_compute_and_stay_close(quick_results):
    """The paper's stage-adaptive rule and, at the same compute, front-only and rear-only reuse: N=2 over
    all 16 steps reuses 8 of them, each skipping 18 of the 24 blocks (ideal 384 / 240 = 1.6x)."""
    rows, _ = quick_results
    for sampler in ("euler", "euler_ancestral"):
        mine = {r["params"]["boundary"]: r for r in rows if r["method"] == "delta_dit" and r["sampler"] == sampler}
        assert set(mine) == {0.6, 0.0, 1.0}
        for r in mine.values():
            assert r["ideal_speedup"] == pytest.approx(1.6, abs=1e-3) and r["predicted_error"] is None, r
            assert r["psnr_mean"] < math.inf and (sampler != "euler" or r["psnr_mean"] > 15), r   # 19.9-20.0 dB measured


def test_reference_model_is_a_stock_wan_with_24_blocks(comfy):
    from benchmarks import run
    from benchmarks.reference import models
    _, model, contexts = run.load_reference(models.get("wan21"))
    dm = model.get_model_object("diffusion_model")
    assert type(dm).__name__ == "WanModel" and len(dm.blocks) == 24
    assert contexts.shape == (11, 4, 4096) and not contexts[10].any()


def test_reference_samples_are_recognisable_digits(quick_results):
    rows, _ = quick_results
    for r in rows:
        if r["method"] == "baseline":
            assert r["cls_acc"] >= 0.7, r


def test_per_sample_rows_compare_ada_and_the_gate_with_the_static_schedule(quick_results):
    rows, _ = quick_results
    per_sample = [r for r in rows if r.get("per_sample")]
    for sampler in ("euler", "euler_ancestral"):
        mine = {r["method"]: r for r in per_sample if r["sampler"] == sampler}
        assert set(mine) == {"baseline", "calibrated", "ada", "gate"}
        ada, static, gate = mine["ada"], mine["calibrated"], mine["gate"]
        assert ada["ideal_min"] == ada["ideal_max"] == pytest.approx(2.0, abs=0.01)   # budget decoding
        assert static["ideal_min"] == static["ideal_max"] > 2.0   # a 30-step schedule on 16 steps: its stretches
        assert 1.5 < gate["ideal_speedup"] <= 2.1 and gate["ideal_min"] <= gate["ideal_max"]
        assert ada["psnr_mean"] > 30 and ada["psnr_min"] <= ada["psnr_mean"]
        assert 0 < ada["policy_share"] < 0.01   # the policy adds well under 1% to a run


def test_forecasting_rows_skip_work_and_are_scored(quick_results):
    """The forecasting schedule and the peers (Spectrum, TaylorSeer) skip what they plan, stay finite
    and get the calibration's predicted error, so the rank correlation covers forecasts too."""
    rows, _ = quick_results
    forecasting = [r for r in rows if r["method"] in ("calibrated_forecast", "spectrum", "taylorseer")]
    assert {(r["method"], r["sampler"]) for r in forecasting} == {
        (m, s) for m in ("calibrated_forecast", "spectrum", "taylorseer") for s in ("euler", "euler_ancestral")}
    for r in forecasting:
        assert r["ideal_speedup"] > 1.5 and math.isfinite(r["psnr_mean"]) and r["predicted_error"] is not None, r
