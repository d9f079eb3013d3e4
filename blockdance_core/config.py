"""User-facing settings of one BlockDance patch, validated once so that bad input fails early
with a message that says what was wrong and what is allowed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

MODES = ("blockdance", "delta")
PAPER_DEPTH = 21 / 28  # BlockDance reuses block 20 of PixArt-alpha's 28: 21 blocks skipped.


class BlockDanceConfigError(ValueError):
    """An input the user can fix; the message names the input and the allowed values."""


@dataclass(frozen=True)
class BlockDanceConfig:
    mode: str = "blockdance"
    depth: float = PAPER_DEPTH
    N: int = 2
    start_percent: float = 0.4
    end_percent: float = 0.95
    reuse_mask: Optional[tuple] = None  # explicit per-step plan (True = reuse); overrides N/window

    def __post_init__(self):
        if self.mode not in MODES:
            raise BlockDanceConfigError(f"mode={self.mode!r} is not supported; allowed: {', '.join(MODES)}")
        if not isinstance(self.depth, (int, float)) or not (0.0 < float(self.depth) <= 1.0):
            raise BlockDanceConfigError(
                f"depth={self.depth!r} is outside (0, 1]: it is the fraction of the block stack skipped on a "
                "reuse step (0.75 = the paper's 21 of 28 blocks; 1.0 = skip every block)")
        if isinstance(self.N, bool) or not isinstance(self.N, int) or self.N < 1:
            raise BlockDanceConfigError(
                f"N={self.N!r} must be an integer >= 1: one cache step then N-1 reuse steps (N=1 = no reuse)")
        for name in ("start_percent", "end_percent"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (0.0 <= float(value) <= 1.0):
                raise BlockDanceConfigError(f"{name}={value!r} must lie in [0, 1] (a fraction of the sampling steps)")
        if self.start_percent >= self.end_percent:
            raise BlockDanceConfigError(
                f"start_percent={self.start_percent} must be below end_percent={self.end_percent}: "
                "reuse happens only on steps inside [start_percent, end_percent)")
        if self.reuse_mask is not None:
            object.__setattr__(self, "reuse_mask", validate_mask(self.reuse_mask))

    def skipped_blocks(self, num_blocks: int) -> int:
        """Blocks 0..k-1 are skipped on a reuse step; the cache point is block k-1."""
        if num_blocks < 1:
            raise BlockDanceConfigError(f"the model has {num_blocks} blocks; BlockDance needs at least one")
        return min(num_blocks, max(1, round(self.depth * num_blocks)))


def validate_mask(mask: Sequence) -> tuple:
    values = tuple(mask)
    if not values:
        raise BlockDanceConfigError("reuse_mask is empty; give one True (reuse) / False (compute) per step")
    for v in values:
        if not isinstance(v, (bool, int)) or int(v) not in (0, 1):
            raise BlockDanceConfigError(f"reuse_mask holds {v!r}; only booleans (True = reuse step) are allowed")
    return tuple(bool(v) for v in values)
