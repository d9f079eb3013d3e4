"""Ada on the calibrated schedule: a closed-loop policy whose prior is a measured schedule.

Why: the exact search already gives the static plan almost every instance wants (docs/oracle.md), so
a per-instance policy should start from it and only move away where it has reason to. The prior is a
Schedule placed on the run's timeline (schedule.place); at every step a small correction reads
signals known before any skipped block runs and may flip the prior's reuse / compute. With no
correction the run follows the placed schedule action for action; with a correction that outputs
zero it reuses on exactly the same steps (bit-identical output).

The budget is exact by action masking: the run reuses exactly as many steps as the placed prior (or
as a given target speedup needs): once the budget is spent every step computes, and when the steps
left equal the reuse steps left every step reuses. A reuse step always continues from the last
computed step, which keeps its range (a cache step) while budget remains, so no reuse falls back.

One (cut, mode) per policy: priors that reuse with several ranges or forecast are refused, since a
flipped step would change what a reuse step saves and the budget would no longer be a step count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
from torch import nn

from .actions import FULL, StepAction, StepKind, cache_step, reuse_step
from .budget import blocks_to_save
from .gate import relative_change
from .policy import ModelFingerprint, Observation, PolicyRun, StepPolicy
from .schedule import Schedule, ScheduleError, place
from .timeline import Timeline
from .tree import tree_leaves

# The closed-loop signals, in the order the correction reads them.
SIGNALS = ("prior_reuse", "drift", "since_refresh", "slack", "position", "log_sigma", "sigma_step")


class PriorError(ScheduleError):
    """A prior schedule or correction the closed-loop policy cannot use; the message says why."""


class Correction(nn.Module):
    """Per-step logit added to the prior's (+margin: reuse, -margin: compute). The last layer starts at
    zero, so an untrained correction leaves the prior."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(len(SIGNALS), hidden), nn.SiLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        return self.net(signals).squeeze(-1)


def single_range(schedule: Schedule) -> tuple:
    """The one (start, cut, mode) the schedule keeps and reuses; a clear error for several or forecasts."""
    ranges = list(schedule.ranges)
    if schedule.forecasts:
        raise PriorError(f"schedule {schedule.name!r} forecasts ({', '.join(schedule.forecasts)}); the closed-loop "
                         "policy follows copy schedules only (calibrate with forecast=copy)")
    if len(ranges) > 1:
        raise PriorError(f"schedule {schedule.name!r} reuses with {len(ranges)} ranges {ranges}; the closed-loop "
                         "policy needs one (cut, mode) so that its budget is a count of reuse steps (calibrate "
                         "with one mode, or use the schedule itself)")
    return ranges[0] if ranges else (0, schedule.num_blocks, "delta")


@dataclass(frozen=True)
class PriorPolicy(StepPolicy):
    """The placed schedule plus a per-step correction (None: the schedule itself, decided step by step).
    target_speedup: reuse as many steps as that speedup needs instead of as many as the placed prior."""
    schedule: Schedule
    correction: Optional[Any] = None   # Correction (shared, never trained through this object)
    target_speedup: Optional[float] = None
    margin: float = 1.0                # how far the correction must move a step's logit to flip the prior
                                       # (inf: never; the correction is then not run at all)
    label: str = "ada-prior"
    trace: bool = False                # keep every decided step's state and signals (training: result())
    name = "ada_prior"

    def __post_init__(self):
        object.__setattr__(self, "_range", single_range(self.schedule))
        if self.target_speedup is not None and not 1.0 <= self.target_speedup < math.inf:
            raise PriorError(f"target_speedup={self.target_speedup!r} must be >= 1.0")
        if not self.margin >= 0:
            raise PriorError(f"margin={self.margin!r} must be >= 0")
        if math.isinf(self.margin):   # a correction that can never flip the prior is not asked
            object.__setattr__(self, "correction", None)

    @property
    def reuse_range(self) -> range:
        """The blocks each reuse step skips (start..cut-1)."""
        return range(self._range[0], self._range[1])

    @property
    def mode(self) -> str:
        return self._range[2]

    def ranges(self, num_blocks: int):
        return ((self.reuse_range, self.mode),)

    def start(self, timeline: Timeline, num_blocks: int) -> "PriorRun":
        prior = place(self.schedule, timeline)
        if self.target_speedup is None:
            budget = sum(1 for a in prior if a.kind is StepKind.REUSE)
        else:
            need = blocks_to_save(timeline.num_steps * num_blocks, self.target_speedup)
            budget = min(max(timeline.num_steps - 1, 0), math.ceil(need / len(self.reuse_range)))
        return PriorRun(self, timeline, prior, budget)

    def describe(self, num_blocks: int) -> dict:
        out = {"policy": self.label, "prior": self.schedule.name}
        if self.target_speedup is not None:
            out["target"] = f"{self.target_speedup:g}x"
        return out

    def check_model(self, model: ModelFingerprint) -> None:
        self.schedule.check_fingerprint(model)


class PriorRun(PolicyRun):
    def __init__(self, policy: PriorPolicy, timeline: Timeline, prior: List[StepAction], budget: int):
        self.policy, self.timeline, self.prior, self.budget = policy, timeline, prior, budget
        self.blocks = policy.reuse_range
        self.used = 0                      # reuse steps taken
        self.source: Optional[int] = None  # the last computed step, when it kept the range
        self.reference: Any = None         # the first hooked block's input at that step (the drift signal)
        self.flips = 0                     # steps where the run left the prior
        self.forced = 0                    # steps the budget decided against the score
        self.visits: List[Visit] = []      # with policy.trace: the free decisions, for training

    def decide(self, seen: Observation) -> StepAction:
        k, steps = seen.step, self.timeline.num_steps
        if self.policy.correction is None and self.policy.target_speedup is None:
            self.used += self.prior[k].kind is StepKind.REUSE
            return self.prior[k]   # the placed schedule, action for action
        prior_reuse = self.prior[k].kind is StepKind.REUSE
        left, remaining = steps - k, self.budget - self.used
        can_reuse = self.source is not None and remaining > 0
        if not can_reuse:
            reuse = False
        elif remaining >= left:
            reuse = True
        elif self.policy.correction is None:
            reuse = prior_reuse   # only the budget moves it (a target other than the prior's)
        else:
            signals = self.signals(seen, prior_reuse)
            with torch.no_grad():
                score = (self.policy.margin if prior_reuse else -self.policy.margin) + float(self.policy.correction(signals))
            reuse = bool(score > 0)
            if self.policy.trace:
                self.visits.append(Visit(k, self.source, remaining, prior_reuse, signals))
        if can_reuse and reuse != prior_reuse:
            self.forced += int(remaining >= left)
            self.flips += 1
        if reuse:
            self.used += 1
            return reuse_step(self.blocks, self.policy.mode, self.source)
        if remaining > 0 and k + 1 < steps:
            self.source = k
            if self.policy.correction is not None:
                self.reference = [t.detach().clone() for t in tree_leaves(seen.block_input)]
            return cache_step(self.blocks, self.policy.mode)
        self.source = None
        return FULL

    def signals(self, seen: Observation, prior_reuse: bool) -> torch.Tensor:
        """SIGNALS at this step: all known before a skipped block runs."""
        t, k = self.timeline, seen.step
        steps = t.num_steps
        drift = relative_change(seen.block_input, self.reference) if self.reference is not None else 0.0
        span = max(abs(t.sigmas[0] - t.sigmas[-1]), 1e-12)
        values = [float(prior_reuse), drift, (k - self.source) / steps, (self.budget - self.used) / (steps - k),
                  t.positions[k], math.log1p(max(t.sigmas[k], 0.0)), abs(t.sigmas[k] - t.sigmas[k + 1]) * steps / span]
        return torch.tensor(values, dtype=torch.float32)

    def summary(self) -> dict:
        return {"budget": f"{self.used}/{self.budget}", "flips": self.flips, "forced": self.forced}

    def result(self) -> Optional[List["Visit"]]:
        return self.visits if self.policy.trace else None


@dataclass(frozen=True)
class Visit:
    """A step where the correction decided (the budget left a choice): the state the expert labels
    (ada_prior_train.py) and the signals the correction read there."""
    step: int
    source: int              # the last computed step that kept the range
    remaining: int           # reuse steps still to spend, this one included
    prior_reuse: bool
    signals: torch.Tensor
