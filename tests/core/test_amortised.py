"""The amortised library: measured reuse errors of training settings, read at a new run's steps, give
that run a schedule without a calibration run."""
import json
import math

import pytest
import torch

from blockdance_core import PatchSpec, Timeline
from blockdance_core.ada_prior import PriorPolicy
from blockdance_core.amortised import AmortisedError, Library, entry_from, stochastic
from blockdance_core.probe import ProbePolicy
from blockdance_core.search import search

from test_engine import sample
from toy_dit import ToyDiT


def measured(steps, model=None):
    model = model or ToyDiT(0, 6)
    sigmas = [1 - k / steps for k in range(steps)] + [0.0]
    _, record = sample(model, PatchSpec(ProbePolicy((6,)), 6), sigmas=sigmas)
    return record.result.measurement()


def library(*measurements, sampler="euler", cfgs=None):
    cfgs = cfgs or [2.0] * len(measurements)
    return Library("toy", 6, 8, 6, "delta", [entry_from(f"m{i}", sampler, "simple", c, m, 6, "delta")
                                             for i, (m, c) in enumerate(zip(measurements, cfgs))])


def test_on_a_measured_timeline_it_predicts_the_measurement_and_gives_the_calibrated_plan():
    m = measured(12)
    lib = library(m)
    predicted = lib.predict(m.timeline, "euler", 2.0)
    upper = torch.ones(12, 12, dtype=torch.bool).triu(1)
    assert torch.allclose(predicted[upper], m.reuse_error(6, "delta")[upper], rtol=1e-5)
    assert torch.isinf(predicted[~upper]).all()
    for target in (1.5, 2.0, 3.0):
        schedule = lib.schedule(m.timeline, target, "euler", 2.0)
        plan = search(m, target, [(6, "delta")])
        assert [s.kind for s in schedule.steps] == [a.kind.value for a in plan.actions()]


def test_another_step_count_is_predicted_from_the_others():
    """Measured at 10 and 30 steps, the library predicts the 20-step run's errors within 25% (log) on
    average and its schedule is within 10% of the calibrated plan's predicted error there."""
    truth = measured(20)
    lib = library(measured(10), measured(30))
    predicted = lib.predict(truth.timeline, "euler", 2.0)
    upper = torch.ones(20, 20, dtype=torch.bool).triu(1)
    log_gap = (predicted[upper].log() - truth.reuse_error(6, "delta")[upper].log()).abs().mean()
    assert log_gap < 0.25
    from blockdance_core.search import predicted_error
    for target in (1.5, 2.0, 2.5):
        own = search(truth, target, [(6, "delta")])
        amortised = lib.schedule(truth.timeline, target, "euler", 2.0)
        from blockdance_core.schedule import place
        mine = predicted_error(truth, place(amortised, truth.timeline))
        assert mine <= own.predicted_error * 1.1 + 1e-9


@pytest.mark.parametrize("target", [1.25, 2.0, 3.5])
def test_the_schedule_meets_the_budget_with_one_range_and_serves_as_a_prior(target):
    lib = library(measured(12), measured(24))
    # positions rounded as the host's timeline rounds them (a schedule keeps 6 decimals)
    timeline = Timeline(tuple(1 - k / 17 for k in range(17)) + (0.0,), tuple(round(k / 17, 6) for k in range(17)))
    schedule = lib.schedule(timeline, target, "euler", 2.0)
    assert schedule.predicted_speedup >= target - 1e-9 and schedule.modes == ("delta",)
    assert {s.cut for s in schedule.steps if s.kind != "full"} == {6}
    run = PriorPolicy(schedule).start(timeline, 6)
    assert run.budget == len(schedule.reuse_steps)


def test_entries_are_weighted_by_sampler_kind_and_cfg():
    lib = library(measured(10), measured(20), cfgs=[1.0, 4.0])
    lib.entries[1] = entry_from("anc", "euler_ancestral", "simple", 4.0, measured(20), 6, "delta")
    assert stochastic("euler_ancestral") and stochastic("dpmpp_2s_ancestral") and not stochastic("dpmpp_2m")
    assert lib.weights("euler", 4.0).tolist() == [pytest.approx(math.exp(-0.5 * (math.log(4) / 0.5) ** 2)), 0.0]
    assert lib.weights("euler_ancestral", 1.0)[0] == 0.0
    lib.cfg_bandwidth = 0.35
    near, far = library(measured(12), measured(12), cfgs=[2.0, 5.0]).weights("euler", 2.0).tolist()
    assert near > far


def test_bandwidth_is_fitted_leave_one_out_on_training_entries_only():
    lib = library(measured(10), measured(16), measured(24), cfgs=[1.0, 2.0, 4.0])
    scores = lib.fit_bandwidth((0.2, 1.0))
    assert set(scores) == {0.2, 1.0} and lib.cfg_bandwidth == min(scores, key=scores.get)


def test_file_round_trip_and_refusals(tmp_path):
    lib = library(measured(10), measured(16), cfgs=[1.5, 3.0])
    path = str(tmp_path / "lib.safetensors")
    lib.save(path)
    loaded = Library.load(path)
    timeline = Timeline.build([1 - k / 13 for k in range(13)] + [0.0])
    assert torch.equal(loaded.predict(timeline, "euler", 2.0), lib.predict(timeline, "euler", 2.0))
    assert [e.name for e in loaded.entries] == ["m0", "m1"] and loaded.cut == 6
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(AmortisedError, match="cannot be read as an amortised library"):
        Library.load(str(bad))
    from safetensors.torch import save_file
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["1.errors"] = -tensors["1.errors"]
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(AmortisedError, match=r"entries\[1\]: positions must rise within \[0, 1\] and errors be >= 0"):
        Library.load(str(bad))
    data = json.loads(meta["meta"])
    data["entries"][0]["steps"] = 11
    save_file({k: v.abs() for k, v in tensors.items()}, str(bad), metadata={**meta, "meta": json.dumps(data)})
    with pytest.raises(AmortisedError, match=r"tensor '0.positions' is torch.float32 \[10\]; expected finite floats of shape \[11\]"):
        Library.load(str(bad))
    save_file(tensors, str(bad), metadata={"format": "something"})
    with pytest.raises(AmortisedError, match="not a BlockDance amortised library"):
        Library.load(str(bad))
    with pytest.raises(AmortisedError, match="needs at least one measured setting"):
        Library("toy", 6, 8, 6, "delta", [])


def test_pairs_an_entry_never_measured_are_left_to_the_entries_that_did():
    """A 40-step run's last steps lie past the 10-step entry's last step (0.9): read there it clamps
    both steps of a pair to one and says zero error; the 30-step entry measured that stretch and decides."""
    short, long = measured(10), measured(30)
    lib = library(short, long)
    timeline = measured(40).timeline
    predicted = lib.predict(timeline, "euler", 2.0)
    positions = torch.tensor(timeline.positions, dtype=torch.float64)
    alone_short = library(short).predict(timeline, "euler", 2.0)
    alone_long = library(long).predict(timeline, "euler", 2.0)
    assert alone_short[38, 39] == 0.0 and alone_long[38, 39] > 0
    assert predicted[38, 39] == pytest.approx(float(alone_long[38, 39]), rel=0.02)
    middle = int((positions < 0.5).sum())   # inside both entries: both count
    assert min(alone_short[5, middle], alone_long[5, middle]) <= predicted[5, middle] <= max(
        alone_short[5, middle], alone_long[5, middle])
