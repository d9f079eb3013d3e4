"""User-facing settings of the fixed-group policy (BlockDance-N), validated once so that bad input
fails early with a message that says what was wrong and what is allowed. The node's widget defaults
come from here."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .actions import MODES
from .forecast import LABELS, Forecast


class BlockDanceConfigError(ValueError):
    """An input the user can fix; the message names the input and the allowed values."""


@dataclass(frozen=True)
class BlockDanceConfig:
    mode: str = "blockdance"
    depth: float = 0.75          # fraction of the block stack skipped on a reuse step (the paper's 21/28)
    N: int = 2
    start_percent: float = 0.4   # window on the sampling timeline, as ComfyUI's start/end_percent
    end_percent: float = 0.95
    forecast: str = "copy"       # what a reuse step continues from: a copy, or an extrapolation (forecast.py)

    def __post_init__(self):
        check_mode(self.mode)
        check_forecast(self.forecast)
        check_depth(self.depth)
        if isinstance(self.N, bool) or not isinstance(self.N, int) or self.N < 1:
            raise BlockDanceConfigError(
                f"N={self.N!r} must be an integer >= 1: one cache step then N-1 reuse steps (N=1 = no reuse)")
        for name in ("start_percent", "end_percent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= float(value) <= 1.0):
                raise BlockDanceConfigError(
                    f"{name}={value!r} must lie in [0, 1] (a point of the sampling timeline: 0 = first step, "
                    "1 = end, as ComfyUI's own start_percent / end_percent)")
        if self.start_percent >= self.end_percent:
            raise BlockDanceConfigError(
                f"start_percent={self.start_percent} must be below end_percent={self.end_percent}: "
                "reuse happens only on steps inside [start_percent, end_percent)")

    def skipped_blocks(self, num_blocks: int) -> int:
        return skipped_blocks(self.depth, num_blocks)

    @property
    def forecaster(self) -> Forecast:
        return Forecast.parse(self.forecast)


DEFAULTS = {f.name: f.default for f in fields(BlockDanceConfig)}


def check_mode(mode) -> None:
    if mode not in MODES:
        raise BlockDanceConfigError(f"mode={mode!r} is not supported; allowed: {', '.join(MODES)}")


def check_forecast(forecast) -> None:
    if forecast not in LABELS:
        raise BlockDanceConfigError(
            f"forecast={forecast!r} is not supported; allowed: {', '.join(LABELS)} (copy: reuse the cached "
            "features as they are; taylorK / chebyshevK: extrapolate them to the current step from the last "
            "K + 1 computed steps)")


MAX_GROUP = 100   # the nodes' largest N


def check_group_size(N) -> None:
    """N as the nodes take it: an integer in [1, MAX_GROUP]."""
    if isinstance(N, bool) or not isinstance(N, int) or not 1 <= N <= MAX_GROUP:
        raise BlockDanceConfigError(f"N={N!r} must be an integer in [1, {MAX_GROUP}]: one cache step then N-1 "
                                    "reuse steps (N=1 = no reuse)")


def check_depth(depth) -> None:
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not (0.0 < float(depth) <= 1.0):
        raise BlockDanceConfigError(
            f"depth={depth!r} is outside (0, 1]: it is the fraction of the block stack skipped on a "
            "reuse step (0.75 = the paper's 21 of 28 blocks; 1.0 = skip every block)")


def skipped_blocks(depth: float, num_blocks: int) -> int:
    """Blocks 0..k-1 are skipped on a reuse step at this depth; never zero blocks."""
    if num_blocks < 1:
        raise BlockDanceConfigError(f"the model has {num_blocks} blocks; BlockDance needs at least one")
    return min(num_blocks, max(1, round(depth * num_blocks)))
