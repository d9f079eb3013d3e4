"""The calibrator's search over Delta-DiT ranges: a rear range whose change is steady is chosen over
prefixes whose features move, and the choice survives the schedule file and its placement."""
import json

import pytest
import torch

from blockdance_core import Timeline
from blockdance_core.probe import Measurement
from blockdance_core.schedule import Schedule, ScheduleError, place
from blockdance_core.search import predicted_error, search

SIGMAS = [1.0 - k / 12 for k in range(12)] + [0.0]


def steady_rear(seed=0):
    """Blocks 0-1 move a lot from step to step; blocks 2-3 add the same change at every step, so
    skipping them in delta mode (their change kept) is exact, and any prefix is not."""
    g = torch.Generator().manual_seed(seed)
    steps = len(SIGMAS) - 1
    front = torch.randn(steps, 2, 32, generator=g).cumsum(0)
    rear = torch.randn(1, 2, 32, generator=g)
    features = {1: front * 0.5, 2: front, 3: front + rear * 0.5, 4: front + rear}
    bases = {c: torch.randn(steps, 2, 32, generator=g) for c in features}
    return Measurement((1, 2, 3, 4), 4, Timeline.build(SIGMAS), features, bases, 8)


def test_range_error_of_a_steady_rear_range_is_zero_and_needs_delta():
    m = steady_rear()
    errors = m.range_error(2, 4, "delta")
    assert float(errors[0, 1:].abs().max()) < 1e-6
    assert torch.equal(m.range_error(0, 4, "delta"), m.reuse_error(4, "delta"))
    with pytest.raises(ValueError, match="needs delta mode"):
        m.range_error(2, 4, "blockdance")


def test_the_search_picks_the_rear_range_when_it_is_offered():
    m = steady_rear()
    front = [(c, mode) for c in m.cuts for mode in ("blockdance", "delta")]
    with_rear = front + [(4, "delta", 2), (4, "delta", 3)]
    plain, ranged = search(m, 1.3, front), search(m, 1.3, with_rear)
    assert all(g.start == 0 for g in plain.groups)
    assert ranged.groups and all(g.start == 2 and g.cut == 4 for g in ranged.groups)
    assert ranged.predicted_error < 1e-5 < plain.predicted_error
    assert ranged.ideal_speedup >= 1.3
    actions = ranged.actions()
    assert {(a.blocks.start, a.blocks.stop) for a in actions if a.kind.value != "full"} == {(2, 4)}
    assert predicted_error(m, actions) == pytest.approx(ranged.predicted_error, abs=1e-9)


def test_a_range_schedule_round_trips_as_version_2_and_places_its_ranges(tmp_path):
    m = steady_rear()
    plan = search(m, 1.3, [(4, "delta", 2), (2, "blockdance")])
    schedule = Schedule.from_plan("rear", "toy", 8, m.timeline, plan)
    assert schedule.ranges == ((2, 4, "delta"),) and "blocks 2-3 of 4 skipped" in schedule.describe()
    path = tmp_path / "rear.json"
    schedule.save(str(path))
    assert json.loads(path.read_text())["version"] == 2
    assert Schedule.load(str(path)) == schedule
    assert place(schedule, m.timeline) == plan.actions()


def test_a_start_that_is_not_below_the_cut_is_named():
    m = steady_rear()
    data = Schedule.from_plan("rear", "toy", 8, m.timeline, search(m, 1.3, [(4, "delta", 2)])).to_json()
    k = next(i for i, s in enumerate(data["steps"]) if s["kind"] == "reuse")
    data["steps"][k]["start"] = 4
    with pytest.raises(ScheduleError, match=f"steps\\[{k}\\].start"):
        Schedule.from_json(data, "bad.json")
