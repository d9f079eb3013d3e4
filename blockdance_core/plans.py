"""Building per-step plans: which steps reuse, and which compute and keep features for them."""
from __future__ import annotations

from typing import List, Sequence

from .actions import FULL, StepAction, StepKind, cache_step, reuse_step
from .forecast import COPY, Forecast
from .timeline import Timeline, bin_of


def group_reuse(timeline: Timeline, N: int, start: float, end: float) -> List[bool]:
    """BlockDance-N: the steps inside the window [start, end) of the timeline form groups of N whose
    first step computes and whose other N-1 steps reuse; outside the window nothing is reused."""
    reuse = [False] * timeline.num_steps
    for j, k in enumerate(timeline.steps_between(start, end)):
        reuse[k] = (j % N) != 0
    return reuse


def plan_from_reuse(reuse: Sequence[bool], blocks: range, mode: str, forecast: Forecast = COPY) -> List[StepAction]:
    """Turn a per-step reuse flag into actions: a step caches only when the next one reuses, the first
    step never reuses (nothing is cached yet), and each reuse step names its group's cache step.
    A forecast reads more computed steps than the cache step: the computed steps just before a group's
    cache step keep the range too (anchors), so the first group already forecasts."""
    reuse = [bool(r) for r in reuse]
    if reuse:
        reuse[0] = False
    actions, source = [], None
    for k, r in enumerate(reuse):
        if r:
            actions.append(reuse_step(blocks, mode, source, forecast))
        elif k + 1 < len(reuse) and reuse[k + 1]:
            actions.append(cache_step(blocks, mode))
            source = k
        else:
            actions.append(FULL)
    return keep_anchors(actions, forecast.anchors - 1)


def keep_anchors(actions: List[StepAction], before: int) -> List[StepAction]:
    """The `before` computed steps preceding each cache step also keep its range (forecast anchors)."""
    out = list(actions)
    for k, action in enumerate(actions):
        if action.kind is not StepKind.CACHE:
            continue
        j, kept = k - 1, 0
        while j >= 0 and kept < before and out[j].kind is not StepKind.REUSE:
            if out[j].kind is StepKind.FULL:
                out[j] = cache_step(action.blocks, action.mode)
            elif out[j].blocks != action.blocks or out[j].mode != action.mode:
                break   # another range's cache step: no anchor of this one before it
            kept += 1
            j -= 1
    return out


def resample(values: Sequence, timeline: Timeline) -> list:
    """A per-step sequence made for len(values) evenly spaced steps, read at each step's position on
    the timeline, so a plan made for one step count still serves another."""
    values = list(values)
    return [values[bin_of(p, len(values))] for p in timeline.positions]
