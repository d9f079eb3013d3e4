"""The step-policy seam: one interface turns (step, what is known so far) into a StepAction.

Fixed groups (BlockDance-N), explicit masks, calibrated schedules and learned policies (Ada re-plans
once at step rho from the latent) are all implementations. A policy object is immutable and shared by
every clone of a patched model; `start` gives the per-run state, which lives on the sampling run.

Batch rule: the engine decides once per step for the whole forward batch (every conditioning chunk and
every sample in it), at the step's first forward, because skipping blocks for some rows of a batch
and not others would mean splitting the batch. A per-instance policy that sees samples wanting
different actions folds them into one decision (Ada: the mean of the samples' probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .actions import StepAction
from .forecast import COPY, Forecast
from .config import BlockDanceConfig, BlockDanceConfigError, check_depth, check_mode, skipped_blocks
from .plans import group_reuse, plan_from_reuse, resample
from .timeline import Timeline
from .tree import tree_clone


@dataclass(frozen=True)
class Observation:
    """What a policy may look at when a step is decided: at the step's first forward, when the first
    hooked block is reached (so the block input exists and nothing has been skipped yet)."""
    step: int
    timeline: Timeline
    x: Any = None             # the noisy latent entering the model in that forward
    context: Any = None       # the conditioning tensor of that forward, when the host gives one
    block_input: Any = None   # the input state of the first hooked block
    record: Any = None        # the run's record so far (RunRecord)


MAX_LATENT_CHANNELS = 1024    # what a schedule or policy file may claim (untrusted input)
MAX_COND_WIDTH = 65536


@dataclass(frozen=True)
class ModelFingerprint:
    """What a schedule or policy must fit, known when patching: the family, its block count, the
    blocks' hidden width, the latent's channels and the conditioning's width (None: not known)."""
    family: str
    num_blocks: int
    width: Optional[int] = None
    latent_channels: Optional[int] = None
    cond_width: Optional[int] = None

    def describe(self) -> str:
        parts = [self.family, f"{self.num_blocks} blocks"]
        for label, value in (("width", self.width), ("latent channels", self.latent_channels),
                             ("conditioning width", self.cond_width)):
            if value:
                parts.append(f"{label} {value}")
        return ", ".join(parts)

    def mismatches(self, other: "ModelFingerprint") -> List[str]:
        """The fields where the two differ; a field either side does not know is not compared."""
        out = []
        for name in ("family", "num_blocks", "width", "latent_channels", "cond_width"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine and theirs and mine != theirs:
                out.append(name)
        return out


class PolicyRun:
    """A policy's state for one sampler run. A policy that measures (calibration) lists the blocks
    it wants to watch in `observes`; the engine then calls `see` with each one's output, and with
    its input for the blocks in `observes_inputs` (those inputs are cloned: blocks work in place)."""
    observes: frozenset = frozenset()
    observes_inputs: frozenset = frozenset()

    def decide(self, seen: Observation) -> StepAction:
        raise NotImplementedError

    def summary(self) -> dict:
        """key=value pairs this run's decisions add to the log line (e.g. Ada's mask)."""
        return {}

    def result(self) -> Any:
        """What the run leaves for its caller besides the record (a probe's measurement, a training
        rollout's log-probability); it travels on the run's record (RunRecord.result)."""
        return None

    def watch(self, index: int, block_input: Any) -> Callable[[int, int, Any, Optional[Callable[[Any], Any]]], None]:
        """The observation hook: watched block `index` is about to run on `block_input`; returns what the
        engine calls, under the run's lock, with (step, evaluation, block output, to_stage) once it ran.
        Inputs of the blocks in `observes_inputs` are cloned first (blocks work in place)."""
        before = tree_clone(block_input) if index in self.observes_inputs else None
        return lambda step, evaluation, out, to_stage: self.see(step, evaluation, index, before, out, to_stage)

    def see(self, step: int, evaluation: int, index: int, block_input: Any, block_output: Any,
            to_stage: Optional[Callable[[Any], Any]]) -> None:
        """A watched block ran in a forward of `step` (model evaluation `evaluation`)."""


class PlannedRun(PolicyRun):
    """A plan fixed when the run starts."""

    def __init__(self, plan: List[StepAction]):
        self.plan = plan

    def decide(self, seen: Observation) -> StepAction:
        return self.plan[seen.step]


class StepPolicy:
    name = "policy"

    def ranges(self, num_blocks: int) -> Tuple[Tuple[range, str], ...]:
        """Every (block range, mode) a step of this policy may keep or skip."""
        raise NotImplementedError

    def blocks(self, num_blocks: int) -> range:
        """Every block a reuse step of this policy may skip: these blocks get hooks, no others."""
        ranges = [r for r, _ in self.ranges(num_blocks)]
        return range(min(r.start for r in ranges), max(r.stop for r in ranges))

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        raise NotImplementedError

    def anchors(self, num_blocks: int) -> int:
        """How many computed entries per chunk a run keeps for this policy's forecasts (1: copies only)."""
        return 1

    def describe(self, num_blocks: int) -> dict:
        """key=value pairs for the end-of-run log line."""
        return {}

    def check_model(self, model: ModelFingerprint) -> None:
        """Raise a clear error, naming both sides, if this policy was made for another model."""


@dataclass(frozen=True)
class GroupPolicy(StepPolicy):
    """BlockDance-N: inside a window of the timeline, one cache step then N-1 reuse steps."""
    config: BlockDanceConfig
    name = "groups"

    def ranges(self, num_blocks: int) -> Tuple[Tuple[range, str], ...]:
        return ((range(self.config.skipped_blocks(num_blocks)), self.config.mode),)

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        c = self.config
        reuse = group_reuse(timeline, c.N, c.start_percent, c.end_percent)
        return PlannedRun(plan_from_reuse(reuse, self.blocks(num_blocks), c.mode, c.forecaster))

    def anchors(self, num_blocks: int) -> int:
        return self.config.forecaster.anchors

    def describe(self, num_blocks: int) -> dict:
        c = self.config
        out = {"depth": f"{c.depth:.2f}", "N": c.N, "window": f"{c.start_percent:.2f}-{c.end_percent:.2f}",
               "cache_block": f"{self.blocks(num_blocks).stop - 1}/{num_blocks}"}
        if c.forecast != "copy":
            out["forecaster"] = c.forecast
        return out


@dataclass(frozen=True)
class MaskPolicy(StepPolicy):
    """An explicit per-step reuse mask made for len(reuse) evenly spaced steps, read on the timeline
    (by_step: read by step index instead, for masks that count steps as fixed-schedule methods do)."""
    reuse: tuple
    depth: float = BlockDanceConfig.depth
    mode: str = BlockDanceConfig.mode
    forecast: Forecast = COPY
    by_step: bool = False
    name = "mask"

    def __post_init__(self):
        object.__setattr__(self, "reuse", validate_mask(self.reuse))
        check_depth(self.depth)
        check_mode(self.mode)

    def anchors(self, num_blocks: int) -> int:
        return self.forecast.anchors

    def ranges(self, num_blocks: int) -> Tuple[Tuple[range, str], ...]:
        return ((range(skipped_blocks(self.depth, num_blocks)), self.mode),)

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        n, steps = len(self.reuse), timeline.num_steps
        reuse = [self.reuse[k * n // steps] for k in range(steps)] if self.by_step else resample(self.reuse, timeline)
        return PlannedRun(plan_from_reuse(reuse, self.blocks(num_blocks), self.mode, self.forecast))

    def describe(self, num_blocks: int) -> dict:
        return {"depth": f"{self.depth:.2f}", "mask": "".join("R" if r else "-" for r in self.reuse),
                "cache_block": f"{self.blocks(num_blocks).stop - 1}/{num_blocks}"}


def validate_mask(mask: Sequence) -> tuple:
    values = tuple(mask)
    if not values:
        raise BlockDanceConfigError("reuse mask is empty; give one True (reuse) / False (compute) per step")
    for v in values:
        if isinstance(v, float) or not isinstance(v, (bool, int)) or int(v) not in (0, 1):
            raise BlockDanceConfigError(f"reuse mask holds {v!r}; only booleans (True = reuse step) are allowed")
    return tuple(bool(v) for v in values)


def check_action(action: StepAction, hooked: range, step: int, policy: StepPolicy) -> Optional[str]:
    """Why an action cannot be carried out with the hooks installed (None when it can)."""
    blocks = action.blocks
    if action.kind.value == "reuse" and action.source is None:
        return f"policy {policy.name!r} asked for a reuse at step {step} without naming its cache step"
    if action.kind.value != "full":
        if len(blocks) == 0 or blocks.step != 1 or blocks.start < hooked.start or blocks.stop > hooked.stop:
            return (f"policy {policy.name!r} asked for blocks {blocks.start}..{blocks.stop - 1} at step {step}, "
                    f"outside the hooked blocks {hooked.start}..{hooked.stop - 1}")
    return None
