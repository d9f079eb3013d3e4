"""What one sampling step does with the block stack.

An action names a block *range*, not a depth: a reuse step skips `blocks` and continues from what
its group's cache step kept at the end of that range, or from a forecast of it (forecast.py) made from
that cache step and the computed steps before it. Today's policies skip a prefix (BlockDance
blocks 0..i); Delta-DiT's rear or middle ranges use the same action and the same engine.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from .forecast import COPY, Forecast

MODES = ("blockdance", "delta")


class StepKind(enum.Enum):
    FULL = "full"    # compute every block, keep nothing
    CACHE = "cache"  # compute every block, keep the result of `blocks` for the reuse steps that follow
    REUSE = "reuse"  # skip `blocks`, continue from what the group's cache step kept


@dataclass(frozen=True)
class StepAction:
    kind: StepKind
    blocks: range = range(0)   # CACHE: the range whose result is kept; REUSE: the range skipped
    mode: str = "blockdance"   # blockdance: reuse the range's output; delta: its input now + (output - input) then
    source: Optional[int] = None  # REUSE: the group's cache step; entries made before it are never reused
    forecast: Forecast = COPY     # REUSE: copy what the cache step kept, or extrapolate from it and earlier ones

    @property
    def skipped(self) -> int:
        return len(self.blocks) if self.kind is StepKind.REUSE else 0

    def to_dict(self) -> dict:
        out = {"kind": self.kind.value}
        if self.kind is not StepKind.FULL:
            out.update(blocks=[self.blocks.start, self.blocks.stop], mode=self.mode)
        if self.source is not None:
            out["source"] = self.source
        if self.forecast != COPY:
            out["forecast"] = self.forecast.label
        return out


FULL = StepAction(StepKind.FULL)


def cache_step(blocks: range, mode: str) -> StepAction:
    return StepAction(StepKind.CACHE, blocks, mode)


def reuse_step(blocks: range, mode: str, source: int, forecast: Forecast = COPY) -> StepAction:
    return StepAction(StepKind.REUSE, blocks, mode, source, forecast)
