"""The compute budget's rules, in one place: block executions a target speedup saves, the ideal
speedup of a count of executions (every block costing the same), and the step count of the uncached
model at the same cost."""
from __future__ import annotations

import math

from .timeline import POSITION_EPS as EPS


def blocks_to_save(total: int, target_speedup: float) -> int:
    """Block executions, out of `total`, to skip for an ideal speedup of at least `target_speedup`."""
    return max(0, math.ceil(total * (1 - 1 / target_speedup) - EPS))


def ideal_speedup(total: int, executed: int) -> float:
    """The uncached model's block executions over the executions made (1 when none were made)."""
    return total / executed if executed else 1.0


def saved_share(speedup: float) -> float:
    """The share of block executions an ideal `speedup` saves."""
    return 1 - 1 / speedup


def fewer_steps(steps: int, speedup: float) -> int:
    """The step count at which the uncached model costs what `steps` steps at `speedup` cost."""
    return max(1, math.floor(steps / speedup + EPS))
