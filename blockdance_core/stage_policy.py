"""Delta-DiT's stage-adaptive rule as a step policy.

Delta-DiT (Chen et al., arXiv 2406.01125) finds that the front blocks of a DiT shape the outline and the
rear blocks the detail. Early in sampling the detail is not formed yet, so it reuses the *rear* blocks;
after a boundary b the outline is settled, so it reuses the *front* blocks. Reuse is in groups of N (one
cache step, then N-1 reuse steps) inside a window of the timeline, as BlockDance-N, and by default keeps
the range's own change (`delta`, the paper's Delta-Cache). A group keeps the range its cache step chose,
so a group that straddles b still reuses what it cached.

Paper settings (PixArt-alpha, 20 steps): b = 12 (0.6 of the timeline), N = 2; the 1.6x it reports with
every second step reusing fits 21 of 28 blocks skipped (0.75) **(choice: read from that speedup)**.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Tuple

from .actions import StepKind
from .config import BlockDanceConfig, BlockDanceConfigError, skipped_blocks
from .plans import group_reuse, plan_from_reuse
from .policy import PlannedRun, PolicyRun, StepPolicy
from .timeline import POSITION_EPS, Timeline


def _check_fraction(name: str, value, low_open: bool, meaning: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (0.0 < float(value) <= 1.0) if low_open else (0.0 <= float(value) <= 1.0)
    if not ok:
        allowed = "(0, 1]" if low_open else "[0, 1]"
        raise BlockDanceConfigError(f"{name}={value!r} must lie in {allowed}: {meaning}")


@dataclass(frozen=True)
class StageAdaptivePolicy(StepPolicy):
    """Before `boundary` reuse the rear `rear_size` of the stack, from it on the front `front_size`."""
    boundary: float = 0.6       # point of the sampling timeline where rear reuse turns into front reuse
    rear_size: float = 0.75     # fraction of the stack, at its end, skipped on reuse steps before the boundary
    front_size: float = 0.75    # fraction of the stack, at its start, skipped on reuse steps from the boundary on
    N: int = 2
    start_percent: float = 0.0
    end_percent: float = 1.0
    mode: str = "delta"
    name = "delta_dit"

    def __post_init__(self):
        # mode, N and the window are checked (and worded) as the Patch node's own inputs
        BlockDanceConfig(mode=self.mode, N=self.N, start_percent=self.start_percent, end_percent=self.end_percent)
        _check_fraction("boundary", self.boundary, False,
                        "the point of the sampling timeline where reuse moves from the rear blocks to the front "
                        "blocks (0 = front blocks only, 1 = rear blocks only; the paper: 0.6, step 12 of 20)")
        for name, where in (("rear_size", "end"), ("front_size", "start")):
            _check_fraction(name, getattr(self, name), True,
                            f"the fraction of the block stack, counted from its {where}, skipped on a reuse step "
                            "(0.75 = 21 of 28 blocks, the paper's; 1.0 = every block)")

    def rear(self, num_blocks: int) -> range:
        return range(num_blocks - skipped_blocks(self.rear_size, num_blocks), num_blocks)

    def front(self, num_blocks: int) -> range:
        return range(skipped_blocks(self.front_size, num_blocks))

    def ranges(self, num_blocks: int) -> Tuple[Tuple[range, str], ...]:
        """Only the ranges some step can use: boundary 0 never reuses the rear, 1 never the front."""
        out = []
        if self.boundary > 0.0:
            out.append((self.rear(num_blocks), self.mode))
        if self.boundary < 1.0:
            out.append((self.front(num_blocks), self.mode))
        return tuple(out)

    def range_at(self, position: float, num_blocks: int) -> range:
        return self.rear(num_blocks) if position < self.boundary - POSITION_EPS else self.front(num_blocks)

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        reuse = group_reuse(timeline, self.N, self.start_percent, self.end_percent)
        plan = []
        for k, action in enumerate(plan_from_reuse(reuse, range(0), self.mode)):
            if action.kind is StepKind.CACHE:
                action = replace(action, blocks=self.range_at(timeline.positions[k], num_blocks))
            elif action.kind is StepKind.REUSE:   # the range its group's cache step kept
                action = replace(action, blocks=self.range_at(timeline.positions[action.source], num_blocks))
            plan.append(action)
        return PlannedRun(plan)

    def describe(self, num_blocks: int) -> dict:
        rear, front = self.rear(num_blocks), self.front(num_blocks)
        return {"boundary": f"{self.boundary:.2f}", "rear": f"{rear.start}-{rear.stop - 1}",
                "front": f"{front.start}-{front.stop - 1}", "N": self.N,
                "window": f"{self.start_percent:.2f}-{self.end_percent:.2f}"}
