"""What one sampling run did, step by step, and the `BlockDance:` log line derived from it.

The record is the one account of a run: the log line, the node's text and the UI's per-step strip
are all drawn from `to_dict()`, never re-derived from the plan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional, Set

from .actions import StepAction, StepKind
from .budget import ideal_speedup
from .forecast import COPY, Forecast


@dataclass
class StepRecord:
    step: Optional[int]          # None: calls at sigmas off the run's schedule (e.g. DPM-2 midpoints)
    sigma: Optional[float] = None
    position: Optional[float] = None   # on the sampling timeline, 0..1
    planned: str = ""            # what the policy chose: full / cache / reuse
    blocks: Optional[list] = None  # [start, stop) of the range the step kept or skipped
    mode: str = ""
    forecast: str = ""           # a reuse step that extrapolates: the forecast made ("copy": too few anchors yet)
    calls: int = 0               # model forwards at this step
    reused_calls: int = 0
    fallback_calls: int = 0      # planned reuse with nothing usable cached: computed and cached instead
    displaced_calls: int = 0     # another node's patch held a block of the range: ran in full
    cached_calls: int = 0        # forwards that kept features for later steps
    blocks_run: int = 0          # every block executed, blocks_redone included
    blocks_skipped: int = 0
    blocks_redone: int = 0       # executed in an evaluation that was discarded and done again (guidance.py)
    cache_bytes: int = 0         # cache size when the step's last forward ended

    @property
    def done(self) -> str:
        """What happened: reuse if any forward of the step reused, cache if one kept features, else full."""
        if self.reused_calls:
            return "reuse"
        return "cache" if self.cached_calls else "full"

    @property
    def action(self) -> StepAction:
        """What the step was planned to do, as the engine's own type (its cache step is not kept)."""
        blocks = range(*self.blocks) if self.blocks else range(0)
        forecast = Forecast.parse(self.forecast) if self.forecast else COPY
        return StepAction(StepKind(self.planned or "full"), blocks, self.mode or "blockdance", forecast=forecast)

    @property
    def depth(self) -> float:
        """Fraction of the stack skipped by the step's reusing forwards (0 when nothing was skipped)."""
        total = self.blocks_run - self.blocks_redone + self.blocks_skipped
        return self.blocks_skipped / total if total else 0.0


@dataclass
class RunRecord:
    num_steps: int
    num_blocks: int
    steps: List[StepRecord] = field(default_factory=list)
    offgrid: StepRecord = field(default_factory=lambda: StepRecord(step=None))
    cache_peak_bytes: int = 0
    notes: List[str] = field(default_factory=list)   # said once per run: what the user should know
    extra: dict = field(default_factory=dict)         # what the policy's decisions were (e.g. Ada's mask)
    # What the policy's run leaves for its caller (PolicyRun.result: a probe's measurement, a training
    # rollout); never serialised, never in the log line.
    result: Any = field(default=None, repr=False, compare=False)

    def step(self, index: Optional[int]) -> StepRecord:
        return self.offgrid if index is None else self.steps[index]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _all(self) -> List[StepRecord]:
        return self.steps + [self.offgrid]

    def _sum(self, name: str) -> int:
        return sum(getattr(s, name) for s in self._all())

    @property
    def steps_reused(self) -> Set[int]:
        return {s.step for s in self.steps if s.reused_calls}

    @property
    def steps_forecast(self) -> Set[int]:
        """Reuse steps whose features were extrapolated, not copied."""
        return {s.step for s in self.steps if s.reused_calls and s.forecast not in ("", "copy")}

    # Run totals: one StepRecord field summed over every step and the off-grid calls.
    model_calls = property(lambda self: self._sum("calls"))
    fallback_calls = property(lambda self: self._sum("fallback_calls"))
    displaced_calls = property(lambda self: self._sum("displaced_calls"))
    block_calls_run = property(lambda self: self._sum("blocks_run"))
    block_calls_skipped = property(lambda self: self._sum("blocks_skipped"))

    @property
    def block_calls_total(self) -> int:
        """Block executions the uncached model makes for the same forwards."""
        return self.block_calls_run - self._sum("blocks_redone") + self.block_calls_skipped

    @property
    def ideal_speedup(self) -> float:
        """Speedup of the block stack if every block cost the same: total / executed."""
        return ideal_speedup(self.block_calls_total, self.block_calls_run)

    def to_dict(self) -> dict:
        def step_dict(s: StepRecord) -> dict:
            return {**asdict(s), "done": s.done, "depth": round(s.depth, 4)}
        return {
            "num_steps": self.num_steps, "num_blocks": self.num_blocks,
            "steps": [step_dict(s) for s in self.steps],
            "offgrid": step_dict(self.offgrid) if self.offgrid.calls else None,
            "reused": len(self.steps_reused), "blocks_skipped": self.block_calls_skipped,
            "blocks_total": self.block_calls_total, "ideal_speedup": round(self.ideal_speedup, 4),
            "cache_peak_bytes": self.cache_peak_bytes, "model_calls": self.model_calls,
            "displaced_calls": self.displaced_calls, "fallback_calls": self.fallback_calls,
            "notes": list(self.notes), "extra": dict(self.extra),
        }

    def log_line(self, family: str, mode: str, **extra) -> str:
        parts = [
            f"family={family}",
            f"mode={mode}",
            f"reused={len(self.steps_reused)}/{self.num_steps}",
            f"blocks_skipped={self.block_calls_skipped}/{self.block_calls_total}",
            f"ideal={self.ideal_speedup:.2f}x",
            f"cache_mb={self.cache_peak_bytes / 2**20:.2f}",
        ]
        if any(s.forecast for s in self.steps):
            parts.append(f"forecast={len(self.steps_forecast)}/{len(self.steps_reused)}")
        parts += [f"{k}={v}" for k, v in {**extra, **self.extra}.items()]
        return "BlockDance: " + " ".join(parts)


def parse_log_line(line: str) -> dict:
    """Inverse of RunRecord.log_line, for tools and tests: key=value pairs after `BlockDance:`."""
    _, _, rest = line.partition("BlockDance:")
    return dict(item.split("=", 1) for item in rest.split() if "=" in item)
