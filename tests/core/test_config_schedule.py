import math

import pytest

from blockdance_core import (BlockDanceConfig, BlockDanceConfigError, StepAction, StepClock,
                             plan_from_reuse, plan_groups, resample_mask, window_steps)


@pytest.mark.parametrize("kwargs, needle", [
    ({"depth": 0.0}, "outside (0, 1]"),
    ({"depth": 1.5}, "outside (0, 1]"),
    ({"N": 0}, ">= 1"),
    ({"N": 2.5}, ">= 1"),
    ({"start_percent": 0.6, "end_percent": 0.5}, "must be below"),
    ({"start_percent": 0.5, "end_percent": 0.5}, "must be below"),
    ({"end_percent": 1.2}, "[0, 1]"),
    ({"mode": "teacache"}, "allowed: blockdance, delta"),
    ({"reuse_mask": []}, "empty"),
    ({"reuse_mask": [True, 2]}, "only booleans"),
])
def test_bad_input_is_a_clear_error(kwargs, needle):
    with pytest.raises(BlockDanceConfigError) as err:
        BlockDanceConfig(**kwargs)
    assert needle in str(err.value)


def test_depth_maps_to_paper_block_count():
    assert BlockDanceConfig(depth=21 / 28).skipped_blocks(28) == 21
    assert BlockDanceConfig(depth=0.75).skipped_blocks(57) == 43
    assert BlockDanceConfig(depth=0.01).skipped_blocks(4) == 1   # never zero blocks
    assert BlockDanceConfig(depth=1.0).skipped_blocks(4) == 4


def test_window_is_a_fraction_of_steps():
    assert list(window_steps(20, 0.4, 0.95)) == list(range(8, 19))
    assert list(window_steps(10, 0.0, 1.0)) == list(range(10))


def test_n1_plans_no_reuse():
    assert all(a is StepAction.FULL for a in plan_groups(30, 1, 0.0, 1.0))


def test_groups_cache_then_reuse():
    plan = plan_groups(20, 3, 0.4, 0.95)
    F, C, R = StepAction.FULL, StepAction.CACHE, StepAction.REUSE
    assert plan[:8] == [F] * 8
    assert plan[8:19] == [C, R, R, C, R, R, C, R, R, C, R]
    assert plan[19] is F


@pytest.mark.parametrize("N, ceiling", [(2, 1.26), (3, 1.38), (4, 1.45), (5, 1.49)])
def test_plan_reaches_the_method_ceiling(N, ceiling):
    """method.md section 6: 28 blocks, 21 skipped, window 40%..95%."""
    S = 1000
    reuse = sum(a is StepAction.REUSE for a in plan_groups(S, N, 0.4, 0.95)) / S
    assert math.isclose(1 / (1 - reuse * 21 / 28), ceiling, abs_tol=0.006)


def test_mask_plan_never_reuses_first_step_and_caches_before_reuse():
    plan = plan_from_reuse([True, True, False, True, False])
    assert plan == [StepAction.CACHE, StepAction.REUSE, StepAction.CACHE, StepAction.REUSE, StepAction.FULL]


def test_resample_mask_by_normalised_time():
    assert resample_mask([False, True], 4) == [False, False, True, True]
    assert resample_mask([False, False, True, True], 2) == [False, True]


def test_step_clock_identifies_steps_by_sigma():
    clock = StepClock([14.6, 7.0, 3.1, 1.0, 0.0])
    assert clock.num_steps == 4
    assert clock.step_of(7.0000001) == 1
    assert clock.step_of(5.0) is None        # off-grid midpoint (DPM-2S)
    assert clock.step_of(0.0) is None        # the final sigma is never a step
    assert clock.matches([14.6, 7.0, 3.1, 1.0, 0.0]) and not clock.matches([14.6, 7.0, 0.0])
