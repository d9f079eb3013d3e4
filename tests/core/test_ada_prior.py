"""The closed-loop policy on a calibrated prior: zero correction = the static schedule, bit for bit;
any correction spends exactly the budget."""
import pytest
import torch

from blockdance_core import PatchSpec
from blockdance_core.ada_prior import SIGNALS, Correction, PriorError, PriorPolicy
from blockdance_core.probe import ProbePolicy, candidate_cuts
from blockdance_core.schedule import Schedule, SchedulePolicy, place
from blockdance_core.search import search

from test_calibration import evenly, kinds, toy_schedule
from test_engine import sample
from toy_dit import ToyDiT


def calibrated(model, target, option=(6, "delta")):
    """A schedule searched on the toy's own probe run (one range), as BlockDance Calibrate makes it."""
    spec = PatchSpec(ProbePolicy(candidate_cuts(model.num_blocks)), model.num_blocks)
    _, record = sample(model, spec)
    measurement = record.result.measurement()
    plan = search(measurement, target, [option])
    return Schedule.from_plan("toy", "toy", measurement.width, measurement.timeline, plan)


def random_correction(seed, scale=3.0):
    net = Correction()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return net


@pytest.mark.parametrize("target", [1.5, 2.0, 3.0])
def test_zero_correction_reproduces_the_static_schedule_bit_for_bit(target):
    model = ToyDiT(0, 6)
    schedule = calibrated(model, target)
    static, static_record = sample(model, PatchSpec(SchedulePolicy(schedule), 6))
    assert static_record.steps_reused   # the prior really reuses
    prior_only, prior_record = sample(model, PatchSpec(PriorPolicy(schedule), 6))
    assert torch.equal(prior_only, static)
    assert [s.done for s in prior_record.steps] == [s.done for s in static_record.steps]
    zero, zero_record = sample(model, PatchSpec(PriorPolicy(schedule, Correction()), 6))
    assert torch.equal(zero, static)
    assert zero_record.steps_reused == static_record.steps_reused
    assert zero_record.block_calls_skipped == static_record.block_calls_skipped
    assert zero_record.fallback_calls == 0 and zero_record.extra["flips"] == 0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("target", [1.5, 2.5])
def test_any_correction_spends_exactly_the_budget(seed, target):
    model = ToyDiT(0, 6)
    schedule = calibrated(model, target)
    reuse_steps = len(schedule.reuse_steps)
    _, record = sample(model, PatchSpec(PriorPolicy(schedule, random_correction(seed)), 6))
    assert record.block_calls_skipped == reuse_steps * 6     # the executed block fraction is the prior's
    assert record.fallback_calls == 0                        # every reuse continued from a kept step
    assert record.extra["budget"] == f"{reuse_steps}/{reuse_steps}"


def test_random_corrections_do_leave_the_prior():
    """So that the budget test above is not passed by corrections that never flip a step."""
    model = ToyDiT(0, 6)
    schedule = calibrated(model, 2.0)
    flips = [sample(model, PatchSpec(PriorPolicy(schedule, random_correction(s)), 6))[1].extra["flips"]
             for s in range(8)]
    assert sum(f > 0 for f in flips) >= 4


def test_a_correction_moves_the_reuse_steps():
    """A large correction that always says 'compute' leaves the prior until the budget forces reuse:
    the same number of reuse steps, all at the end of the run."""
    model = ToyDiT(0, 6)
    schedule = calibrated(model, 2.0)
    compute = Correction()
    with torch.no_grad():
        compute.net[-1].bias.fill_(-10.0)
    _, record = sample(model, PatchSpec(PriorPolicy(schedule, compute), 6))
    n = len(schedule.reuse_steps)
    assert record.steps_reused == set(range(12 - n, 12))
    assert record.extra["forced"] > 0 and record.extra["flips"] > 0


@pytest.mark.parametrize("target", [1.25, 2.0, 4.0])
def test_a_target_speedup_sets_the_budget_in_blocks(target):
    """On another step count the placed prior may miss the target; with target_speedup the run skips the
    fewest whole reuse steps that reach it, whatever the correction."""
    model = ToyDiT(0, 6)
    schedule = calibrated(model, 2.0)
    sigmas = [1.0 - k / 20 for k in range(20)] + [0.0]
    for seed in range(3):
        policy = PriorPolicy(schedule, random_correction(seed), target_speedup=target)
        _, record = sample(model, PatchSpec(policy, 6), sigmas=sigmas)
        need = -(-round(20 * 6 * (1 - 1 / target)) // 6)
        assert record.block_calls_skipped == need * 6 and record.ideal_speedup >= target - 1e-9


def test_signals_are_known_before_the_skipped_blocks_and_finite():
    model = ToyDiT(0, 6)
    schedule = calibrated(model, 2.0)
    seen = []

    class Watching(Correction):
        def forward(self, signals):
            seen.append(signals.clone())
            return super().forward(signals)

    sample(model, PatchSpec(PriorPolicy(schedule, Watching()), 6))
    table = torch.stack(seen)
    assert table.shape[1] == len(SIGNALS) and torch.isfinite(table).all()
    drift = table[:, SIGNALS.index("drift")]
    assert (drift > 0).any() and (drift >= 0).all()         # the cut's input moves between steps
    slack = table[:, SIGNALS.index("slack")]
    assert ((slack > 0) & (slack < 1)).all()                # decided steps are the ones the budget leaves open


def test_priors_it_cannot_follow_are_refused():
    mixed = Schedule("mixed", "toy", 6, 8, toy_schedule("FCRRCRF", cut=3).steps[:4]
                     + toy_schedule("FCRRCRF", cut=6).steps[4:], 1.5, 1.4, 0.1)
    with pytest.raises(PriorError, match="reuses with 2 ranges"):
        PriorPolicy(mixed)
    with pytest.raises(PriorError, match="target_speedup=0.5 must be >= 1.0"):
        PriorPolicy(toy_schedule(), target_speedup=0.5)


def test_placed_on_another_step_count_it_is_the_placed_schedule():
    schedule = toy_schedule("FCRRCRF", cut=6)
    run = PriorPolicy(schedule).start(evenly(14), 6)
    assert kinds(run.prior) == kinds(place(schedule, evenly(14))) and run.budget == 6
