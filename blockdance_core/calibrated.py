"""A measured schedule: per-step actions on the sampling timeline, saved as JSON and followed by
SchedulePolicy.

The steps are placed by their position on the model's timeline (0 = start of sampling, 1 = end),
so the same schedule serves another step count or scheduler: each step of a run takes the action
of the calibrated step whose stretch of the timeline it falls in. A schedule names the model it
was measured on (family, block count, width); loading it for another model is refused. Files are
JSON only and are validated field by field, with the file named in every error.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

from .actions import FULL, MODES, StepAction, cache_step, reuse_step
from .policy import PlannedRun, PolicyRun, StepPolicy
from .timeline import Timeline

FORMAT = "blockdance-schedule"
VERSION = 1
KINDS = ("full", "cache", "reuse")


class ScheduleError(ValueError):
    """A schedule file or object that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class ScheduleStep:
    position: float     # on the sampling timeline, 0..1
    sigma: float        # at calibration (informative; placement uses the position)
    kind: str           # full / cache / reuse
    cut: int = 0        # blocks 0..cut-1 skipped by the group this step caches for or reuses in
    mode: str = ""      # blockdance / delta, for cache and reuse steps


@dataclass(frozen=True)
class Schedule:
    name: str
    family: str
    num_blocks: int
    width: int
    steps: Tuple[ScheduleStep, ...]
    target_speedup: float
    predicted_speedup: float
    predicted_error: float
    calibration: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if not self.steps:
            raise ScheduleError(f"schedule {self.name!r} has no steps")
        for k, s in enumerate(self.steps):
            where = f"schedule {self.name!r} step {k}"
            if s.kind not in KINDS:
                raise ScheduleError(f"{where}: kind {s.kind!r}; allowed: {', '.join(KINDS)}")
            if s.kind != "full" and (s.mode not in MODES or not 1 <= s.cut <= self.num_blocks):
                raise ScheduleError(f"{where}: {s.kind} needs a mode in {MODES} and a cut in 1..{self.num_blocks}, "
                                    f"got mode={s.mode!r} cut={s.cut!r}")
            if not 0.0 <= s.position <= 1.0:
                raise ScheduleError(f"{where}: position {s.position!r} is outside [0, 1]")
        if self.steps[0].kind == "reuse":
            raise ScheduleError(f"schedule {self.name!r}: the first step cannot reuse (nothing is cached yet)")

    @classmethod
    def from_plan(cls, name: str, family: str, width: int, timeline: Timeline, plan,
                  calibration: Optional[dict] = None) -> "Schedule":
        """The schedule a searched plan (blockdance_core.search.Plan) describes, its steps placed at
        the positions of the measured run's timeline."""
        steps = tuple(ScheduleStep(round(timeline.positions[k], 6), round(timeline.sigmas[k], 6), kind, cut, mode)
                      for k, (kind, cut, mode) in enumerate(plan.steps()))
        return cls(name, family, plan.num_blocks, width, steps, plan.target_speedup, round(plan.ideal_speedup, 4),
                   round(plan.predicted_error, 6), dict(calibration or {}))

    @property
    def modes(self) -> Tuple[str, ...]:
        return tuple(sorted({s.mode for s in self.steps if s.kind != "full"}))

    @property
    def reuse_steps(self) -> List[int]:
        return [k for k, s in enumerate(self.steps) if s.kind == "reuse"]

    def describe(self) -> str:
        """One line per group: which steps reuse, at which depth and mode."""
        lines, k = [], 0
        while k < len(self.steps):
            s = self.steps[k]
            if s.kind == "cache":
                last = k
                while last + 1 < len(self.steps) and self.steps[last + 1].kind == "reuse":
                    last += 1
                lines.append(f"steps {k + 1}-{last} reuse after step {k} ({s.mode}, {s.cut}/{self.num_blocks} "
                             f"blocks skipped, t={s.position:.2f}-{self.steps[last].position:.2f})")
                k = last + 1
            else:
                k += 1
        return "\n".join(lines) if lines else "no reuse"

    def check_model(self, family: str, num_blocks: int, width: Optional[int], source: str = "") -> None:
        """Refuse to drive a model other than the one the schedule was measured on."""
        mine = f"{self.family}, {self.num_blocks} blocks, width {self.width}"
        theirs = f"{family}, {num_blocks} blocks" + (f", width {width}" if width else "")
        if self.family != family or self.num_blocks != num_blocks or (width and self.width and width != self.width):
            raise ScheduleError(f"schedule {source or self.name!r} was measured on {mine}; this model is {theirs}. "
                                "Calibrate a schedule for this model with BlockDance Calibrate.")

    # ---------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "name": self.name,
                "model": {"family": self.family, "num_blocks": self.num_blocks, "width": self.width},
                "target_speedup": self.target_speedup, "predicted_speedup": self.predicted_speedup,
                "predicted_error": self.predicted_error, "calibration": self.calibration,
                "steps": [asdict(s) for s in self.steps]}

    @classmethod
    def from_json(cls, data, source: str = "schedule") -> "Schedule":
        def fail(why: str) -> ScheduleError:
            return ScheduleError(f"{source}: {why}")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise fail(f"not a BlockDance schedule (expected a JSON object with \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise fail(f"schedule format version {data.get('version')!r}; this pack reads version {VERSION}")
        try:
            model = data["model"]
            steps = tuple(ScheduleStep(float(s["position"]), float(s["sigma"]), str(s["kind"]), int(s.get("cut", 0)),
                                       str(s.get("mode", ""))) for s in data["steps"])
            return cls(str(data.get("name", os.path.basename(source))), str(model["family"]), int(model["num_blocks"]),
                       int(model.get("width", 0)), steps, float(data["target_speedup"]),
                       float(data["predicted_speedup"]), float(data.get("predicted_error", math.nan)),
                       dict(data.get("calibration", {})))
        except ScheduleError as err:
            raise fail(str(err)) from None
        except (KeyError, TypeError, ValueError) as err:
            raise fail(f"malformed schedule ({type(err).__name__}: {err})") from None

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> "Schedule":
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ScheduleError(f"{path}: not valid JSON ({err})") from None
        except OSError as err:
            raise ScheduleError(f"{path}: cannot be read ({err.strerror})") from None
        return cls.from_json(data, path)


@dataclass(frozen=True)
class SchedulePolicy(StepPolicy):
    """Follows a measured schedule, placed on this run's timeline."""
    schedule: Schedule
    name = "schedule"

    def ranges(self, num_blocks: int):
        found = {(s.cut, s.mode) for s in self.schedule.steps if s.kind != "full"}
        return tuple((range(c), m) for c, m in sorted(found)) or ((range(1), "blockdance"),)

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        return PlannedRun(place(self.schedule, timeline))

    def describe(self, num_blocks: int) -> dict:
        return {"schedule": self.schedule.name}

    def check_model(self, family: str, num_blocks: int) -> None:
        self.schedule.check_model(family, num_blocks, None)


def place(schedule: Schedule, timeline: Timeline) -> List[StepAction]:
    """Each step of the run takes the action of the calibrated step whose stretch of the timeline
    holds it. A step caches when the run's next step falls on a calibrated reuse step (for that
    step's cut and mode); a reuse step continues only a group of the same cut and mode; the first
    step never reuses. For the calibrated step count and scheduler this is the calibrated plan."""
    positions = [s.position for s in schedule.steps]
    actions: List[StepAction] = []
    group: Optional[Tuple[int, str, int]] = None   # (cut, mode, cache step)
    for k in range(timeline.num_steps):
        s = schedule.steps[_index_at(positions, timeline.positions[k])]
        if s.kind == "reuse" and group is not None and group[:2] == (s.cut, s.mode):
            actions.append(reuse_step(range(s.cut), s.mode, group[2]))
            continue
        nxt = _next_reuse(schedule, positions, timeline, k)
        if nxt is not None:
            actions.append(cache_step(range(nxt[0]), nxt[1]))
            group = (*nxt, k)
        else:
            actions.append(FULL)
            group = None
    return actions


def _index_at(positions: List[float], p: float) -> int:
    return max([j for j, q in enumerate(positions) if q <= p + 1e-9] or [0])


def _next_reuse(schedule: Schedule, positions: List[float], timeline: Timeline, k: int) -> Optional[Tuple[int, str]]:
    """(cut, mode) when the run's next step falls on a calibrated reuse step, else None."""
    if k + 1 >= timeline.num_steps:
        return None
    s = schedule.steps[_index_at(positions, timeline.positions[k + 1])]
    return (s.cut, s.mode) if s.kind == "reuse" else None
