"""A sampler run's steps: their sigmas, where they sit on the model's sampling timeline, and which
step a model call belongs to.

Positions follow ComfyUI's own `start_percent` / `end_percent` (EasyCache, LazyCache, ControlNet):
0 is the start of sampling and 1 its end on the model's timeline (`model_sampling.percent_to_sigma`),
so a window or a schedule means the same point whatever the step count, the scheduler, denoise < 1
or a chain of samplers (Wan 2.2's two experts). The host computes the positions; the core only uses
them.

Steps are identified by sigma, never by counting model calls: Heun-type samplers call the model
twice per step and cond/uncond arrive in one batched call or several. Sigma alone is ambiguous when
the schedule repeats a sigma, and Heun's corrector for step k runs at step k+1's sigma; the sampler's
step callback (which fires once a step's own forward is done) tells the clock how far the run is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


# Positions on the timeline are floats made from sigmas; comparisons and bin lookups allow this much
# so that a step exactly on a boundary lands on the same side everywhere.
POSITION_EPS = 1e-9


def bin_of(position: float, bins: int) -> int:
    """The bin of `bins` equal stretches of the timeline that holds `position` (the last for 1.0)."""
    return min(bins - 1, int(position * bins + POSITION_EPS))


@dataclass(frozen=True)
class Timeline:
    sigmas: Tuple[float, ...]      # the run's schedule, ending with the target sigma (never evaluated)
    positions: Tuple[float, ...]   # one per step, in [0, 1]

    def __post_init__(self):
        if len(self.positions) != self.num_steps:
            raise ValueError(f"{len(self.positions)} timeline positions for {self.num_steps} steps")

    @property
    def num_steps(self) -> int:
        return max(0, len(self.sigmas) - 1)

    @classmethod
    def build(cls, sigmas: Sequence[float], position_of=None) -> "Timeline":
        """`position_of(sigma)` maps a sigma onto the model's timeline; without it a step's position
        is its fraction of the steps (what the timeline gives for evenly spaced schedules)."""
        sigmas = tuple(float(s) for s in sigmas)
        steps = max(0, len(sigmas) - 1)
        if position_of is None:
            positions = tuple(k / steps for k in range(steps))
        else:
            positions = tuple(min(1.0, max(0.0, float(position_of(s)))) for s in sigmas[:steps])
        return cls(sigmas, positions)

    def steps_between(self, start: float, end: float) -> range:
        """Steps whose position p satisfies start <= p < end (they are consecutive: p grows with k)."""
        inside = [k for k, p in enumerate(self.positions) if start - POSITION_EPS <= p < end - POSITION_EPS]
        return range(inside[0], inside[-1] + 1) if inside else range(0)


class StepClock:
    """Maps the sigma of a model call to its step index in one sampler run."""

    def __init__(self, sigmas: Sequence[float]):
        self.sigmas = [float(s) for s in sigmas]
        self.num_steps = max(0, len(self.sigmas) - 1)
        self._floor = 0   # no call can belong to a step before this one

    def advance(self, finished_step: int) -> None:
        """The sampler reported step `finished_step` done: later calls belong to later steps, except
        calls at a sigma the run has no later step for (a sampler that re-evaluates a step)."""
        self._floor = max(self._floor, int(finished_step) + 1)

    def step_of(self, sigma: float) -> Optional[int]:
        """The first step at or after the run's progress whose sigma matches (relative 1e-4, like
        ComfyUI's context windows), else the latest earlier match; None for off-grid sigmas such as
        DPM-2's midpoints."""
        sigma = float(sigma)
        matches = [k for k in range(self.num_steps)
                   if math.isclose(self.sigmas[k], sigma, rel_tol=1e-4, abs_tol=1e-7)]
        if not matches:
            return None
        later = [k for k in matches if k >= self._floor]
        step = later[0] if later else matches[-1]
        self._floor = max(self._floor, step)  # without callbacks, calls still only move forward
        return step
