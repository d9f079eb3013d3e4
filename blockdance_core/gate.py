"""A training-free per-instance baseline: reuse while the input has barely moved.

At each step the gate compares the input of the first hooked block with its value at the group's
cache step (relative L1, over the whole batch): below `threshold` the step reuses, otherwise it
computes and becomes the new cache step. The input is known before any skipped block runs, so the
decision costs one subtraction. `max_reuse` caps a group's length. For a compute budget instead of
a threshold, `fit_threshold` finds the threshold that reaches a target speedup on given runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from .actions import StepAction, cache_step, reuse_step
from .config import check_depth, check_mode, skipped_blocks
from .policy import Observation, PolicyRun, StepPolicy
from .timeline import Timeline
from .tree import tree_leaves


def relative_change(now: Any, then: Any) -> float:
    a, b = tree_leaves(now), tree_leaves(then)
    num = sum(float((x.detach().float() - y.detach().float()).abs().sum()) for x, y in zip(a, b))
    den = sum(float(y.detach().float().abs().sum()) for y in b)
    return num / max(den, 1e-12)


@dataclass(frozen=True)
class GatePolicy(StepPolicy):
    threshold: float
    depth: float = 1.0
    mode: str = "delta"
    max_reuse: int = 8
    name = "gate"

    def __post_init__(self):
        check_depth(self.depth)
        check_mode(self.mode)
        if not self.threshold >= 0:
            raise ValueError(f"threshold={self.threshold!r} must be >= 0")

    def ranges(self, num_blocks: int):
        return ((range(skipped_blocks(self.depth, num_blocks)), self.mode),)

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        return GateRun(self, range(skipped_blocks(self.depth, num_blocks)))

    def describe(self, num_blocks: int) -> dict:
        return {"gate": f"{self.threshold:.4g}", "depth": f"{self.depth:.2f}"}


class GateRun(PolicyRun):
    def __init__(self, policy: GatePolicy, blocks: range):
        self.policy = policy
        self.blocks = blocks
        self.reference: Any = None     # the first hooked block's input at the group's cache step
        self.source: Optional[int] = None
        self.reused = 0

    def decide(self, seen: Observation) -> StepAction:
        p = self.policy
        if (self.reference is not None and self.reused < p.max_reuse
                and relative_change(seen.block_input, self.reference) < p.threshold):
            self.reused += 1
            return reuse_step(self.blocks, p.mode, self.source)
        self.reference = [t.detach().clone() for t in tree_leaves(seen.block_input)]
        self.source, self.reused = seen.step, 0
        return cache_step(self.blocks, p.mode)


def fit_threshold(speedup_at: Callable[[float], float], target: float, low: float = 0.0, high: float = 1.0,
                  iterations: int = 12) -> Tuple[float, float]:
    """The smallest threshold whose measured ideal speedup reaches `target`, by bisection on a
    monotone speedup_at(threshold); returns (threshold, speedup)."""
    while speedup_at(high) < target and high < 1e3:
        low, high = high, high * 4
    best = (high, speedup_at(high))
    for _ in range(iterations):
        mid = (low + high) / 2
        s = speedup_at(mid)
        if s >= target:
            high, best = mid, (mid, s)
        else:
            low = mid
    return best
