import math

import pytest

from blockdance_core import (FULL, BlockDanceConfig, BlockDanceConfigError, GroupPolicy, MaskPolicy, StepClock,
                             Timeline, group_reuse, plan_from_reuse, resample)


@pytest.mark.parametrize("kwargs, needle", [
    ({"depth": 0.0}, "outside (0, 1]"),
    ({"depth": 1.5}, "outside (0, 1]"),
    ({"N": 0}, ">= 1"),
    ({"N": 2.5}, ">= 1"),
    ({"start_percent": 0.6, "end_percent": 0.5}, "must be below"),
    ({"start_percent": 0.5, "end_percent": 0.5}, "must be below"),
    ({"end_percent": 1.2}, "[0, 1]"),
    ({"mode": "teacache"}, "allowed: blockdance, delta"),
])
def test_bad_input_is_a_clear_error(kwargs, needle):
    with pytest.raises(BlockDanceConfigError) as err:
        BlockDanceConfig(**kwargs)
    assert needle in str(err.value)


@pytest.mark.parametrize("mask, needle", [([], "empty"), ([True, 2], "only booleans"), ([0.5], "only booleans")])
def test_bad_mask_is_a_clear_error(mask, needle):
    with pytest.raises(BlockDanceConfigError, match=needle):
        MaskPolicy(tuple(mask))


def test_depth_maps_to_paper_block_count():
    assert BlockDanceConfig(depth=21 / 28).skipped_blocks(28) == 21
    assert BlockDanceConfig(depth=0.75).skipped_blocks(57) == 43
    assert BlockDanceConfig(depth=0.01).skipped_blocks(4) == 1   # never zero blocks
    assert BlockDanceConfig(depth=1.0).skipped_blocks(4) == 4


def evenly(steps):
    return Timeline.build([1 - k / steps for k in range(steps + 1)])


def kinds(plan):
    return "".join(a.kind.value[0].upper() for a in plan)


def test_window_is_a_stretch_of_the_timeline():
    assert list(evenly(20).steps_between(0.4, 0.95)) == list(range(8, 19))
    assert list(evenly(10).steps_between(0.0, 1.0)) == list(range(10))
    # the same window on a run that starts half way (denoise 0.5): positions, not step fractions
    half = Timeline(tuple(1 - k / 20 for k in range(10, 21)), tuple(k / 20 for k in range(10, 20)))
    assert list(half.steps_between(0.4, 0.95)) == list(range(0, 9))


def test_n1_plans_no_reuse():
    plan = GroupPolicy(BlockDanceConfig(N=1, start_percent=0.0, end_percent=1.0)).start(evenly(30), 28).plan
    assert all(a == FULL for a in plan)


def test_groups_cache_then_reuse_and_name_their_cache_step():
    plan = GroupPolicy(BlockDanceConfig(N=3)).start(evenly(20), 28).plan
    assert kinds(plan) == "F" * 8 + "CRRCRRCRRCR" + "F"
    assert [a.source for a in plan[8:11]] == [None, 8, 8]
    assert all(a.blocks == range(21) for a in plan[8:19])


@pytest.mark.parametrize("N, ceiling", [(2, 1.26), (3, 1.38), (4, 1.45), (5, 1.49)])
def test_plan_reaches_the_method_ceiling(N, ceiling):
    """method.md section 6: 28 blocks, 21 skipped, window 40%..95%."""
    S = 1000
    reuse = sum(group_reuse(evenly(S), N, 0.4, 0.95)) / S
    assert math.isclose(1 / (1 - reuse * 21 / 28), ceiling, abs_tol=0.006)


def test_mask_plan_never_reuses_first_step_and_caches_before_reuse():
    plan = plan_from_reuse([True, True, False, True, False], range(3), "delta")
    assert kinds(plan) == "CRCRF"
    assert plan[1].mode == "delta" and plan[3].source == 2


def test_resample_by_timeline_position():
    assert resample([False, True], evenly(4)) == [False, False, True, True]
    assert resample([False, False, True, True], evenly(2)) == [False, True]


def test_step_clock_identifies_steps_by_sigma():
    clock = StepClock([14.6, 7.0, 3.1, 1.0, 0.0])
    assert clock.num_steps == 4
    assert clock.step_of(7.0000001) == 1
    assert clock.step_of(5.0) is None        # off-grid midpoint (DPM-2S)
    assert clock.step_of(0.0) is None        # the final sigma is never a step


def test_step_clock_follows_progress_through_repeated_sigmas():
    clock = StepClock([1.0, 0.5, 0.5, 0.5, 0.0])
    assert clock.step_of(1.0) == 0
    clock.advance(0)
    assert clock.step_of(0.5) == 1
    clock.advance(1)
    assert clock.step_of(0.5) == 2 and clock.step_of(0.5) == 2   # a second forward of step 2
    clock.advance(2)
    assert clock.step_of(0.5) == 3
    clock.advance(3)
    assert clock.step_of(0.5) == 3   # nothing later matches: the latest step at that sigma
