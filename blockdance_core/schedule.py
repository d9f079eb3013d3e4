"""Which sampling steps compute the full stack and which reuse cached block features.

Steps are identified by sigma, never by model calls: Heun-type samplers call the model twice
per step and cond/uncond may arrive in one batched call or several, so a call only learns
its step by looking its sigma up in the run's schedule.
"""
from __future__ import annotations

import enum
import math
from typing import List, Optional, Sequence


class StepAction(enum.Enum):
    FULL = "full"    # compute every block, keep nothing
    CACHE = "cache"  # compute every block, keep the cache-point features for the next step(s)
    REUSE = "reuse"  # skip blocks 0..i and continue from the cached features


def window_steps(num_steps: int, start_percent: float, end_percent: float) -> range:
    """Step indices k with start <= k/S < end (the paper's 40%..95% of steps)."""
    first = math.ceil(start_percent * num_steps - 1e-9)
    last = math.ceil(end_percent * num_steps - 1e-9)
    return range(max(0, first), min(num_steps, last))


def plan_groups(num_steps: int, N: int, start_percent: float, end_percent: float) -> List[StepAction]:
    """BlockDance-N: inside the window, groups of N steps whose first step caches and whose
    other N-1 steps reuse; outside the window everything is computed."""
    reuse = [False] * num_steps
    window = window_steps(num_steps, start_percent, end_percent)
    for j, k in enumerate(window):
        reuse[k] = (j % N) != 0
    return plan_from_reuse(reuse)


def plan_from_reuse(reuse: Sequence[bool]) -> List[StepAction]:
    """Turn a per-step reuse flag into actions: a step caches only when the next one reuses,
    and the first step can never reuse (there is nothing cached yet)."""
    reuse = [bool(r) for r in reuse]
    if reuse:
        reuse[0] = False
    actions = []
    for k, r in enumerate(reuse):
        if r:
            actions.append(StepAction.REUSE)
        elif k + 1 < len(reuse) and reuse[k + 1]:
            actions.append(StepAction.CACHE)
        else:
            actions.append(StepAction.FULL)
    return actions


def resample_mask(mask: Sequence[bool], num_steps: int) -> List[bool]:
    """Map a mask defined for len(mask) steps onto num_steps steps by normalised time, so a plan
    made for one step count still serves another (nearest step at the same fraction)."""
    mask = list(mask)
    if len(mask) == num_steps:
        return [bool(m) for m in mask]
    return [bool(mask[min(len(mask) - 1, int((k + 0.5) * len(mask) / num_steps))]) for k in range(num_steps)]


class StepClock:
    """Maps the sigma of a model call to its step index in one sampler run's schedule."""

    def __init__(self, sample_sigmas: Sequence[float]):
        self.sigmas = [float(s) for s in sample_sigmas]
        # The schedule ends with the target sigma (0 for most samplers); it is never evaluated.
        self.num_steps = max(0, len(self.sigmas) - 1)

    def step_of(self, sigma: float) -> Optional[int]:
        """First step whose sigma matches (relative 1e-4, like ComfyUI's context windows);
        None for off-grid sigmas such as the midpoints of DPM-2S."""
        sigma = float(sigma)
        for k in range(self.num_steps):
            if math.isclose(self.sigmas[k], sigma, rel_tol=1e-4, abs_tol=1e-7):
                return k
        return None

    def matches(self, sample_sigmas: Sequence[float]) -> bool:
        other = [float(s) for s in sample_sigmas]
        return len(other) == len(self.sigmas) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) for a, b in zip(other, self.sigmas))
