"""`python -m benchmarks.run --speed-only`'s measurement on a small model of one family."""
import pytest

pytestmark = pytest.mark.timing   # asserts timing noise and efficiency: its own pass (scripts/test.sh)


def test_speed_only_rows(comfy, pack):
    from benchmarks import speed
    rows = speed.measure_family(pack, "wan21", {"num_layers": 8}, 64, steps=10, repeats=2)
    by_config = {r["config"]: r for r in rows}
    assert list(by_config) == ["uncached", "N=1", "N=2", "N=3", "N=3 depth=1",
                               "N=3 depth=1 +taylor2"]  # the uncached copies are not rows
    assert by_config["uncached"]["timing_noise"] < 0.15   # the uncached copies agree with each other
    assert by_config["N=1"]["ideal_speedup"] == 1.0
    assert abs(by_config["N=1"]["efficiency"] - 1) < 0.15  # the patch machinery alone costs little
    assert 1.0 < by_config["N=2"]["ideal_speedup"] < by_config["N=3"]["ideal_speedup"] < by_config["N=3 depth=1"]["ideal_speedup"]
    assert all(r["seconds"] > 0 and r["blocks"] == 8 for r in rows)
    forecast = by_config["N=3 depth=1 +taylor2"]
    # the same plan forecasting: the same blocks skipped, and what it costs over the copy reported
    assert forecast["ideal_speedup"] == by_config["N=3 depth=1"]["ideal_speedup"]
    assert abs(forecast["forecast_overhead"]) < 0.15
