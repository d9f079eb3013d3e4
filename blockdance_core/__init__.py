"""BlockDance feature caching for diffusion transformers, in plain torch.

This package knows nothing of ComfyUI: it plans which steps reuse block features, keeps the
cache, and counts what was skipped. `nodes/` adapts ComfyUI models to it.
"""
from .config import MODES, PAPER_DEPTH, BlockDanceConfig, BlockDanceConfigError
from .engine import BlockDanceEngine
from .schedule import StepAction, StepClock, plan_from_reuse, plan_groups, resample_mask, window_steps
from .stats import RunStats, parse_log_line

__all__ = [
    "MODES", "PAPER_DEPTH", "BlockDanceConfig", "BlockDanceConfigError", "BlockDanceEngine",
    "StepAction", "StepClock", "plan_from_reuse", "plan_groups", "resample_mask", "window_steps",
    "RunStats", "parse_log_line",
]
