"""`python -m benchmarks.ada_check --quick` (issue 19) end to end on a reference model: DAgger trains on the
states the policy visits, the margin is fitted on validation items, every evaluated run spends exactly the
static schedule's budget, and the saved correction loads through BlockDance Ada Loader."""
import json
import os

import pytest

# About a minute of sampling (training rollouts, validation, evaluation and a lockstep timing).
pytestmark = pytest.mark.timing


@pytest.fixture(scope="module")
def quick(comfy, pack, tmp_path_factory):
    from benchmarks import ada_check
    out = tmp_path_factory.mktemp("ada")
    assert ada_check.main(["--quick", "--model", "hunyuan_image21", "--sampler", "euler_ancestral", "--targets", "2",
                           "--json", str(out / "ada.json"), "--save", str(out / "closed_loop.safetensors")]) == 0
    with open(out / "ada.json") as f:
        return json.load(f), out


def test_training_labels_visited_states_and_fits_a_margin(quick):
    result, _ = quick
    rounds = result["training"]["iterations"]
    assert rounds and rounds[-1]["states"] > 0 and 0.0 <= rounds[-1]["expert_differs"] <= 1.0
    assert set(result["validation_psnr"]) == {"1", "inf"}
    assert result["margin"] in (None, 1.0) and result["on_margin"] == 1.0


def test_every_evaluated_run_is_on_budget_and_paired(quick):
    result, _ = quick
    for key in ("summary", "summary_on"):
        row = result[key]["2"]
        n = result["items"]["eval"]
        assert row["budget_exact"] == f"{n}/{n}"
        lo, hi = row["delta_ci95"]
        assert lo <= row["delta_mean"] + 1e-9 <= hi + 2e-9 and row["delta_worst"] <= row["delta_mean"] + 1e-9
    if result["margin"] is None:   # switched off: Ada is the static schedule, item for item
        assert result["summary"]["2"]["delta_mean"] == 0.0 and result["summary"]["2"]["flipped_runs"] == 0
    timing = result["timing"]
    assert timing["ideal_ada"] == pytest.approx(timing["ideal_static"]) and timing["ideal_static"] >= 2.0


def test_the_saved_correction_loads_through_the_ada_loader(quick, pack, monkeypatch):
    import folder_paths
    _, out = quick
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "blockdance", ([str(out)], set()))
    from helpers import node
    loaded = node(pack, "BlockDanceAdaLoader").execute("closed_loop.safetensors").result[0]
    assert type(loaded).__name__ == "LoadedCorrection" and loaded.info["model"] == "hunyuan_image21"
    assert os.path.getsize(out / "closed_loop.safetensors") < 20000
