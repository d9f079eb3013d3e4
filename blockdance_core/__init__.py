"""BlockDance feature caching for diffusion transformers, in plain torch.

This package knows nothing of ComfyUI: policies decide which steps reuse block features, a sampling
run keeps the cache and the per-step record, and `nodes/` adapts ComfyUI models to it.
"""
from .actions import FULL, MODES, StepAction, StepKind, cache_step, reuse_step
from .config import DEFAULTS, BlockDanceConfig, BlockDanceConfigError
from .engine import PatchSpec, SamplingRun
from .policy import GroupPolicy, MaskPolicy, Observation, PlannedRun, PolicyRun, StepPolicy
from .record import RunRecord, StepRecord, parse_log_line
from .plans import group_reuse, plan_from_reuse, resample
from .timeline import StepClock, Timeline
from . import ada, ada_prior, ada_prior_train, amortised, budget, gate, heatmap, probe, schedule, search  # noqa: E402  (policies and calibration, by module)

__all__ = [
    "FULL", "MODES", "StepAction", "StepKind", "cache_step", "reuse_step",
    "DEFAULTS", "BlockDanceConfig", "BlockDanceConfigError",
    "PatchSpec", "SamplingRun",
    "GroupPolicy", "MaskPolicy", "Observation", "PlannedRun", "PolicyRun", "StepPolicy",
    "RunRecord", "StepRecord", "parse_log_line",
    "group_reuse", "plan_from_reuse", "resample",
    "StepClock", "Timeline",
]
