"""`python -m benchmarks.oracle_ceiling --quick` (issue 19 item 1) end to end on a reference model: the table's
structure, the per-item oracle never below the static schedule, and every run at the budget."""
import json

import pytest

MODEL, SAMPLER, TARGET = "hunyuan_image21", "euler_ancestral", 3.0


@pytest.fixture(scope="module")
def quick(comfy, pack, tmp_path_factory):
    from benchmarks import oracle_ceiling
    path = tmp_path_factory.mktemp("oracle") / "oracle.json"
    assert oracle_ceiling.main(["--quick", "--model", MODEL, "--sampler", SAMPLER, "--targets", str(TARGET),
                                "--json", str(path)]) == 0
    with open(path) as f:
        return json.load(f)


def test_quick_oracle_table_structure(quick):
    from benchmarks import oracle_ceiling
    assert quick["model"] == MODEL and quick["sampler"] == SAMPLER and len(quick["items"]) == 2
    assert quick["methods"] == list(oracle_ceiling.METHODS)   # ancestral: the non-clairvoyant row too
    seeds = [(it["noise_seed"], it["sampler_seed"]) for it in quick["items"]]
    assert len({s for pair in seeds for s in pair}) == 4       # every item its own noise and sampler seed
    rows = quick["summary"]["3"]
    assert set(rows) == set(quick["methods"])
    for r in rows.values():
        lo, hi = r["delta_ci95"]
        assert lo <= r["delta_mean"] + 1e-9 and r["delta_mean"] <= hi + 1e-9 and r["delta_worst"] <= r["delta_mean"] + 1e-9
        assert 0.0 <= r["within_1db_of_best"] <= 1.0
    assert rows["shipped"]["delta_mean"] == 0.0 and rows["best"]["within_1db_of_best"] == 1.0
    text = oracle_ceiling.table(quick)
    assert "target 3x" in text and all(label in text for label in quick["labels"].values())
    md = oracle_ceiling.markdown([quick])
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + len(quick["methods"])


def test_per_item_oracle_is_at_least_the_static_schedule(quick):
    for it in quick["items"]:
        best = it["psnr"]["best"]["3"]
        assert best >= it["psnr"]["shipped"]["3"] and best >= it["psnr"]["own"]["3"]
        assert best >= it["psnr"]["hindsight"]["3"] and best >= it["psnr"]["class"]["3"]


def test_every_run_meets_the_budget(quick):
    for it in quick["items"]:
        for method, ideal in it["ideal"].items():
            if method != "allocation":   # per-item budgets; their pooled speedup is checked below
                assert ideal["3"] >= TARGET - 1e-3, (method, ideal)
    assert quick["allocation"]["3"]["pooled_ideal"] >= TARGET - 1e-3
    assert quick["summary"]["3"]["allocation"]["ideal_pooled"] >= TARGET - 1e-3


def test_allocation_is_greedy_within_budget():
    from benchmarks.oracle_ceiling import allocate
    # two items, options (dB, compute fraction); budget 2 / 2.0 = 1.0 compute in all
    options = [[(30.0, 0.25), (40.0, 0.5), (41.0, 0.75)], [(50.0, 0.25), (50.5, 0.5), (51.0, 0.75)]]
    choice = allocate(options, 2.0)
    assert sum(options[i][k][1] for i, k in enumerate(choice)) <= 1.0
    assert choice == [2, 0]   # the budget goes to the item that gains most from it


def test_probe_output_is_the_uncached_output(comfy, pack):
    """The oracle uses each item's probe run as its uncached reference."""
    import torch
    from benchmarks import oracle_ceiling
    from benchmarks.reference import models
    from benchmarks.run import load_reference
    ref_model = models.get(MODEL)
    pack, model, contexts = load_reference(ref_model)
    h = oracle_ceiling.Harness(pack, model, ref_model, contexts, SAMPLER, 8)
    noise = h.noise(oracle_ceiling.noise_seed(0, 0))
    probed, _ = h.probe(0, noise, oracle_ceiling.sampler_seed(0, 0))
    assert torch.equal(probed, h.sample(model, 0, noise, oracle_ceiling.sampler_seed(0, 0)))
