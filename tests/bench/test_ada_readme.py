"""The README's Ada tables are generated from the committed oracle, Ada and amortised JSONs."""
from benchmarks import ada_readme


def test_the_readme_tables_are_the_committed_results():
    assert ada_readme.main(["--check"]) == 0, "README's ada tables are stale: run python -m benchmarks.ada_readme"


def test_the_ada_table_shows_paired_deltas_intervals_worst_unseen_classes_and_budget():
    row = {"delta_mean": 0.5, "delta_ci95": [-0.25, 1.0], "delta_worst": -2.0, "budget_exact": "9/10"}
    on = dict(row, delta_mean=-1.5, budget_exact="10/10")
    result = {"model": "m", "label": "M", "sampler": "euler", "split": "all", "items": {"eval": 10}, "margin": 0.5,
              "targets": [2.0, 3.0], "summary": {"2": row, "3": dict(row, budget_exact="10/10")},
              "summary_on": {"2": on, "3": on}}
    held = dict(result, split="held_out", items={"eval": 4}, summary={"2": dict(row, delta_mean=1.0, budget_exact="4/4"),
                "3": dict(row, delta_mean=2.0, budget_exact="4/4")}, summary_on={"2": dict(on, budget_exact="4/4"),
                "3": dict(on, budget_exact="4/4")})
    lines = ada_readme.ada_table([result, held])
    assert len(lines) == 3
    assert lines[2] == "| M · euler (10 items, margin 0.5) | +0.50 [-0.25, +1.00], -2.00; on -1.50 | " \
                       "+0.50 [-0.25, +1.00], -2.00; on -1.50 | +1.50 (4 items) | 55/56 |"
    assert "(10 items, off)" in ada_readme.ada_table([dict(result, margin=None)])[2]
    assert "| not run |" in ada_readme.ada_table([result])[2]
