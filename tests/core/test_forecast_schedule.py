"""Forecasting schedules: the calibrator's forecast plan survives the schedule file and its
placement, a file with forecasts is refused by a reader that cannot forecast, bad fields are named."""
import json

import pytest
import torch

from blockdance_core import Timeline
from blockdance_core.actions import StepKind
from blockdance_core.forecast import Forecast
from blockdance_core.forecast_search import search_with_forecasts
from blockdance_core.probe import Measurement
from blockdance_core.schedule import Schedule, ScheduleError, SchedulePolicy, place

SIGMAS = [1.0 - k / 16 for k in range(16)] + [0.0]
G = torch.Generator().manual_seed(3)


def moving_measurement(cuts=(2, 4), num_blocks=4):
    """Features at every cut that move linearly with sigma (a forecast predicts them, a copy cannot),
    with an input (base) that moves too."""
    timeline = Timeline.build(SIGMAS)
    a, b = torch.randn(1, 64, generator=G), torch.randn(1, 64, generator=G)
    s = torch.tensor(SIGMAS[:-1]).view(-1, 1, 1)
    features = {c: (a + c) + b * s * c for c in cuts}
    bases = {c: 0.1 * a + s * b * 0.01 for c in cuts}
    return Measurement(tuple(cuts), num_blocks, timeline, features, bases, 8)


def forecast_schedule():
    m = moving_measurement()
    plan = search_with_forecasts(m, 2.0, [(2, "blockdance"), (4, "blockdance")])
    return m, plan, Schedule.from_plan("moving", "toy", 8, m.timeline, plan)


def test_the_search_forecasts_features_that_move_and_the_schedule_keeps_it():
    m, plan, schedule = forecast_schedule()
    assert any(f not in ("", "copy") for f in plan.forecasts())
    assert schedule.forecasts == ("taylor1",)
    assert place(schedule, m.timeline) == plan.actions()       # the calibrated timeline: the plan itself
    assert SchedulePolicy(schedule).anchors(4) == 2
    assert "taylor1" in schedule.describe()


def test_a_forecast_schedule_round_trips_as_version_2_and_copies_stay_version_1(tmp_path):
    m, plan, schedule = forecast_schedule()
    path = tmp_path / "s.json"
    schedule.save(str(path))
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert Schedule.load(str(path)) == schedule
    copies = Schedule(schedule.name, "toy", 4, 8, tuple(s.__class__(s.position, s.sigma, s.kind, s.cut, s.mode)
                                                        for s in schedule.steps), 2.0, 2.0, 0.0)
    assert copies.to_json()["version"] == 1
    assert all("forecast" not in s for s in copies.to_json()["steps"])


def test_anchor_cache_steps_are_kept_when_placed_on_another_step_count():
    m, plan, schedule = forecast_schedule()
    finer = Timeline.build([1.0 - k / 32 for k in range(32)] + [0.0])
    actions = place(schedule, finer)
    assert any(a.kind is StepKind.REUSE and a.forecast == Forecast("taylor", 1) for a in actions)
    for k, a in enumerate(actions):   # every reuse continues a cache step of its range
        if a.kind is StepKind.REUSE:
            assert actions[a.source].kind is StepKind.CACHE and actions[a.source].blocks == a.blocks


@pytest.mark.parametrize("step, needle", [
    ({"kind": "reuse", "cut": 2, "mode": "blockdance", "forecast": "spline1"}, "steps\\[1\\].forecast"),
    ({"kind": "cache", "cut": 2, "mode": "blockdance", "forecast": "taylor1"}, "only reuse steps forecast"),
])
def test_bad_forecast_fields_are_named(step, needle):
    m, plan, schedule = forecast_schedule()
    data = schedule.to_json()
    data["steps"][1] = {"position": data["steps"][1]["position"], "sigma": 0.9, **step}
    data["steps"][0] = {"position": 0.0, "sigma": 1.0, "kind": "cache", "cut": 2, "mode": "blockdance"}
    with pytest.raises(ScheduleError, match=needle):
        Schedule.from_json(data, "bad.json")


def test_an_unknown_version_names_the_versions_read():
    m, plan, schedule = forecast_schedule()
    data = {**schedule.to_json(), "version": 3}
    with pytest.raises(ScheduleError, match="versions 1 and 2"):
        Schedule.from_json(data, "future.json")
