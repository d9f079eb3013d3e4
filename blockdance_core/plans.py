"""Building per-step plans: which steps reuse, and which compute and keep features for them."""
from __future__ import annotations

from typing import List, Sequence

from .actions import FULL, StepAction, cache_step, reuse_step
from .timeline import Timeline, bin_of


def group_reuse(timeline: Timeline, N: int, start: float, end: float) -> List[bool]:
    """BlockDance-N: the steps inside the window [start, end) of the timeline form groups of N whose
    first step computes and whose other N-1 steps reuse; outside the window nothing is reused."""
    reuse = [False] * timeline.num_steps
    for j, k in enumerate(timeline.steps_between(start, end)):
        reuse[k] = (j % N) != 0
    return reuse


def plan_from_reuse(reuse: Sequence[bool], blocks: range, mode: str) -> List[StepAction]:
    """Turn a per-step reuse flag into actions: a step caches only when the next one reuses, the first
    step never reuses (nothing is cached yet), and each reuse step names its group's cache step."""
    reuse = [bool(r) for r in reuse]
    if reuse:
        reuse[0] = False
    actions, source = [], None
    for k, r in enumerate(reuse):
        if r:
            actions.append(reuse_step(blocks, mode, source))
        elif k + 1 < len(reuse) and reuse[k + 1]:
            actions.append(cache_step(blocks, mode))
            source = k
        else:
            actions.append(FULL)
    return actions


def resample(values: Sequence, timeline: Timeline) -> list:
    """A per-step sequence made for len(values) evenly spaced steps, read at each step's position on
    the timeline, so a plan made for one step count still serves another."""
    values = list(values)
    return [values[bin_of(p, len(values))] for p in timeline.positions]
