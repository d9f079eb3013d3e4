"""Delta-DiT's stage-adaptive policy: rear range before the boundary, front range after it."""
import pytest
import torch

from blockdance_core import BlockDanceConfigError, StepKind, Timeline
from blockdance_core.stage_policy import StageAdaptivePolicy
from test_engine import sample, spec_for
from toy_dit import ToyDiT


def plan_of(policy, steps, num_blocks):
    return policy.start(Timeline.build([1.0 - k / steps for k in range(steps)] + [0.0]), num_blocks).plan


def test_paper_settings_on_twenty_steps():
    """b = 12 of 20 steps, N = 2, 21 of 28 blocks: rear groups before step 12, front groups from it on."""
    policy = StageAdaptivePolicy()
    assert (policy.boundary, policy.rear_size, policy.front_size, policy.N, policy.mode) == (0.6, 0.75, 0.75, 2, "delta")
    plan = plan_of(policy, 20, 28)
    assert [a.kind for a in plan] == [StepKind.CACHE, StepKind.REUSE] * 10
    assert [a.blocks for a in plan] == [range(7, 28)] * 12 + [range(0, 21)] * 8
    assert [a.source for a in plan[1::2]] == list(range(0, 20, 2))
    assert {a.mode for a in plan} == {"delta"}
    assert policy.ranges(28) == ((range(7, 28), "delta"), (range(0, 21), "delta"))
    assert policy.blocks(28) == range(0, 28)
    assert policy.describe(28) == {"boundary": "0.60", "rear": "7-27", "front": "0-20", "N": 2, "window": "0.00-1.00"}


def test_a_group_straddling_the_boundary_keeps_its_cache_steps_range():
    policy = StageAdaptivePolicy(boundary=0.5, rear_size=0.25, front_size=0.5, N=3, mode="blockdance")
    plan = plan_of(policy, 10, 8)   # positions k/10; groups start at 0, 3, 6, 9
    assert [a.kind.value for a in plan] == ["cache", "reuse", "reuse"] * 3 + ["full"]
    assert [a.blocks for a in plan[:9]] == [range(6, 8)] * 6 + [range(0, 4)] * 3   # step 5 (0.5) reuses step 3's
    assert plan[5].source == 3


@pytest.mark.parametrize("boundary, used", [(0.0, "front"), (1.0, "rear")])
def test_a_boundary_at_either_end_uses_one_range_and_hooks_only_it(boundary, used):
    policy = StageAdaptivePolicy(boundary=boundary, rear_size=0.25, front_size=0.5)
    expected = {"front": range(0, 4), "rear": range(6, 8)}[used]
    assert policy.ranges(8) == ((expected, "delta"),)
    assert policy.blocks(8) == expected
    assert {a.blocks for a in plan_of(policy, 10, 8) if a.kind is not StepKind.FULL} == {expected}


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_the_toy_skips_the_rear_then_the_front(mode):
    model = ToyDiT(0, 8)
    policy = StageAdaptivePolicy(boundary=0.5, rear_size=0.25, front_size=0.5, N=2, mode=mode)
    before = [b.calls for b in model.single_blocks]
    out, record = sample(model, spec_for(model, policy=policy))   # 12 steps, positions k/12
    ran = [b.calls - c for b, c in zip(model.single_blocks, before)]
    # reuse steps 1, 3, 5 (before 0.5: blocks 6, 7) and 7, 9, 11 (blocks 0..3)
    assert record.steps_reused == {1, 3, 5, 7, 9, 11}
    assert ran == [9, 9, 9, 9, 12, 12, 9, 9]
    assert [record.steps[k].blocks for k in (1, 7)] == [[6, 8], [0, 4]]
    base, _ = sample(model)
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert (out - base).norm() / base.norm() < 0.1


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_n1_is_bit_identical(mode):
    model = ToyDiT(2, 4)
    base, _ = sample(model)
    out, record = sample(model, spec_for(model, policy=StageAdaptivePolicy(N=1, mode=mode)))
    assert torch.equal(out, base) and not record.steps_reused


@pytest.mark.parametrize("field, value, message", [
    ("boundary", 1.5, r"boundary=1\.5 must lie in \[0, 1\]: the point of the sampling timeline"),
    ("boundary", True, r"boundary=True must lie in \[0, 1\]"),
    ("rear_size", 0.0, r"rear_size=0\.0 must lie in \(0, 1\]: the fraction of the block stack, counted from its end"),
    ("front_size", 1.2, r"front_size=1\.2 must lie in \(0, 1\]: .* counted from its start"),
    ("front_size", "0.5", r"front_size='0\.5' must lie in \(0, 1\]"),
    ("N", 0, r"N=0 must be an integer >= 1"),
    ("mode", "forecast", r"mode='forecast' is not supported; allowed: blockdance, delta"),
    ("start_percent", 0.7, r"start_percent=0\.7 must be below end_percent=0\.5"),
])
def test_bad_settings_say_what_is_allowed(field, value, message):
    settings = {"end_percent": 0.5} if field == "start_percent" else {}
    with pytest.raises(BlockDanceConfigError, match=message):
        StageAdaptivePolicy(**{**settings, field: value})
