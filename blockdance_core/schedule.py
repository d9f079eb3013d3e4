"""A measured schedule: per-step actions on the sampling timeline, saved as JSON and followed by
SchedulePolicy.

The steps are placed by their position on the model's timeline (0 = start of sampling, 1 = end),
so the same schedule serves another step count or scheduler: each step of a run takes the action
of the calibrated step whose stretch of the timeline it falls in. A schedule names the model it
was measured on (family, block count, width, and where calibration knew them the latent's channels
and the conditioning's width); using it on another model is refused. Files are
JSON only and are validated field by field, with the file named in every error.

A reuse step may forecast (`forecast`, e.g. "taylor1"): it extrapolates from its group's cache step
and the computed steps before it that kept the same range (cache steps with no reuse after them are
such anchors). A file with forecasts is version 2, so a pack that cannot forecast refuses it rather
than copying where the schedule was measured to forecast.
"""
from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

from . import untrusted
from .actions import FULL, MODES, StepAction, StepKind, cache_step, reuse_step
from .forecast import COPY, LABELS, Forecast
from .policy import MAX_COND_WIDTH, MAX_LATENT_CHANNELS, ModelFingerprint, PlannedRun, PolicyRun, StepPolicy
from .timeline import POSITION_EPS, Timeline
from .tree import tree_leaves

FORMAT = "blockdance-schedule"
VERSION = 1
FORECAST_VERSION = 2         # a schedule with forecasting reuse steps
KINDS = ("full", "cache", "reuse")
MAX_STEPS = 10000            # BlockDance Calibrate's (and KSampler's) largest step count
MAX_BLOCKS = 10000
MAX_BYTES = 4 * 2**20        # a 10,000-step schedule takes about 1 MB
MAX_SIGMA = 1e6
# Positions are saved to 6 decimals; a run's own step lies within half of that of its saved value
# (the host's positions are already rounded so; a core timeline's need not be).
STORED_EPS = 5e-7 + POSITION_EPS


class ScheduleError(untrusted.FieldError):
    """A schedule file or object that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class ScheduleStep:
    position: float     # on the sampling timeline, 0..1
    sigma: float        # at calibration (informative; placement uses the position)
    kind: str           # full / cache / reuse
    cut: int = 0        # blocks 0..cut-1 skipped by the group this step caches for or reuses in
    mode: str = ""      # blockdance / delta, for cache and reuse steps
    forecast: str = ""  # reuse steps: "" (copy) or the forecast they make (forecast.LABELS)
    start: int = 0      # the range's first block: blocks start..cut-1 (0: a prefix; Delta-DiT's rear ranges)


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
    latent_channels: Optional[int] = None   # of the model it was measured on (None: not known, not checked)
    cond_width: Optional[int] = None

    def __post_init__(self):
        if not self.steps:
            raise ScheduleError(f"schedule {self.name!r} has no steps")
        if not 1 <= self.num_blocks <= MAX_BLOCKS or len(self.steps) > MAX_STEPS:
            raise ScheduleError(f"schedule {self.name!r}: {self.num_blocks} blocks and {len(self.steps)} steps; "
                                f"a schedule has 1 to {MAX_BLOCKS} blocks and at most {MAX_STEPS} steps")
        for k, s in enumerate(self.steps):
            where = f"schedule {self.name!r} step {k}"
            if s.kind not in KINDS:
                raise ScheduleError(f"{where}: kind {s.kind!r}; allowed: {', '.join(KINDS)}")
            if s.forecast and (s.kind != "reuse" or s.forecast not in LABELS):
                raise ScheduleError(f"{where}: forecast {s.forecast!r} on a {s.kind} step; only reuse steps "
                                    f"forecast, with one of {', '.join(LABELS)}")
            if s.kind != "full" and (s.mode not in MODES or not 1 <= s.cut <= self.num_blocks):
                raise ScheduleError(f"{where}: {s.kind} needs a mode in {MODES} and a cut in 1..{self.num_blocks}, "
                                    f"got mode={s.mode!r} cut={s.cut!r}")
            if s.start and (s.kind == "full" or not 0 <= s.start < s.cut):
                raise ScheduleError(f"{where}: start {s.start!r} needs a cache or reuse step and 0 <= start < cut "
                                    f"({s.cut!r})")
            if not 0.0 <= s.position <= 1.0:
                raise ScheduleError(f"{where}: position {s.position!r} is outside [0, 1]")
            if k and s.position < self.steps[k - 1].position:
                raise ScheduleError(f"{where}: position {s.position!r} comes before step {k - 1}'s "
                                    f"{self.steps[k - 1].position!r}; steps are in timeline order")
        if self.steps[0].kind == "reuse":
            raise ScheduleError(f"schedule {self.name!r}: the first step cannot reuse (nothing is cached yet)")

    @classmethod
    def from_plan(cls, name: str, family: str, width: int, timeline: Timeline, plan,
                  calibration: Optional[dict] = None, latent_channels: Optional[int] = None,
                  cond_width: Optional[int] = None) -> "Schedule":
        """The schedule a searched plan (blockdance_core.search.Plan) describes, its steps placed at
        the positions of the measured run's timeline."""
        steps = tuple(ScheduleStep(round(timeline.positions[k], 6), round(timeline.sigmas[k], 6), a.kind.value,
                                   a.blocks.stop, a.mode if a.kind is not StepKind.FULL else "",
                                   a.forecast.label if a.forecast != COPY else "", a.blocks.start)
                      for k, a in enumerate(plan.actions()))
        return cls(name, family, plan.num_blocks, width, steps, plan.target_speedup, round(plan.ideal_speedup, 4),
                   round(plan.predicted_error, 6), dict(calibration or {}), latent_channels, cond_width)

    @property
    def modes(self) -> Tuple[str, ...]:
        return tuple(sorted({s.mode for s in self.steps if s.kind != "full"}))

    @property
    def ranges(self) -> Tuple[Tuple[int, int, str], ...]:
        """(start, cut, mode) of every range its cache and reuse steps keep or skip."""
        return tuple(sorted({(s.start, s.cut, s.mode) for s in self.steps if s.kind != "full"}))

    @property
    def forecasts(self) -> Tuple[str, ...]:
        """The forecasts its reuse steps make (empty: it only copies)."""
        return tuple(sorted({s.forecast for s in self.steps if s.forecast}))

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
                how = f"{s.mode}, {self.steps[last].forecast}" if last > k and self.steps[last].forecast else s.mode
                skipped = (f"{s.cut}/{self.num_blocks} blocks skipped" if not s.start else
                           f"blocks {s.start}-{s.cut - 1} of {self.num_blocks} skipped")
                lines.append(f"steps {k + 1}-{last} reuse after step {k} ({how}, {skipped}, "
                             f"t={s.position:.2f}-{self.steps[last].position:.2f})")
                k = last + 1
            else:
                k += 1
        return "\n".join(lines) if lines else "no reuse"

    @property
    def fingerprint(self) -> ModelFingerprint:
        """The model it was measured on (width 0 or a missing field in an old file: unknown, not
        checked)."""
        return ModelFingerprint(self.family, self.num_blocks, self.width or None, self.latent_channels,
                                self.cond_width)

    def check_model(self, family: str, num_blocks: int, width: Optional[int], source: str = "") -> None:
        """Refuse to drive a model other than the one the schedule was measured on."""
        self.check_fingerprint(ModelFingerprint(family, num_blocks, width or None), source)

    def check_fingerprint(self, model: ModelFingerprint, source: str = "") -> None:
        mine = self.fingerprint
        if mine.mismatches(model):
            raise ScheduleError(f"schedule {source or self.name!r} was measured on {mine.describe()}; this model is "
                                f"{model.describe()}. Calibrate a schedule for this model with BlockDance Calibrate.")

    # ---------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        newer = self.forecasts or any(s.start for s in self.steps)
        return {"format": FORMAT, "version": FORECAST_VERSION if newer else VERSION, "name": self.name,
                "model": self._model_json(),
                "target_speedup": self.target_speedup, "predicted_speedup": self.predicted_speedup,
                "predicted_error": self.predicted_error, "calibration": self.calibration,
                "steps": [_step_to_json(s) for s in self.steps]}

    @classmethod
    def from_json(cls, data, source: str = "schedule") -> "Schedule":
        """A schedule from parsed JSON, every field checked for type and range first."""
        u = untrusted
        try:
            u.mapping(data, source)
            if data.get("format") != FORMAT:
                raise ScheduleError(f"not a BlockDance schedule (expected a JSON object with \"format\": \"{FORMAT}\")")
            if data.get("version") not in (VERSION, FORECAST_VERSION):
                raise ScheduleError(f"schedule format version {u.show(data.get('version'))}; "
                                    f"this pack reads versions {VERSION} and {FORECAST_VERSION}")
            model = u.mapping(data.get("model"), "model")
            num_blocks = u.integer(model.get("num_blocks"), "model.num_blocks", 1, MAX_BLOCKS)
            raw_steps = u.sequence(data.get("steps"), "steps", 1, MAX_STEPS)
            steps = tuple(_step_from_json(s, f"steps[{k}]", num_blocks) for k, s in enumerate(raw_steps))
            predicted_error = data.get("predicted_error")
            return cls(
                u.text(data.get("name", os.path.basename(source)), "name"),
                u.text(model.get("family"), "model.family", 64), num_blocks,
                u.integer(model.get("width", 0), "model.width", 0, 2**20), steps,
                u.number(data.get("target_speedup"), "target_speedup", 1.0, 1000.0),
                u.number(data.get("predicted_speedup"), "predicted_speedup", 1.0, 1000.0),
                math.nan if predicted_error is None else u.number(predicted_error, "predicted_error", 0.0, 1e9),
                u.flat_record(data.get("calibration", {}), "calibration"),
                _optional_integer(model, "latent_channels", MAX_LATENT_CHANNELS),
                _optional_integer(model, "cond_width", MAX_COND_WIDTH))
        except untrusted.FieldError as err:
            raise ScheduleError(f"{source}: {err}") from None

    def _model_json(self) -> dict:
        """The "model" object: latent channels and conditioning width only where known, so a file
        without them reads as before."""
        out = {"family": self.family, "num_blocks": self.num_blocks, "width": self.width}
        out.update({k: v for k, v in (("latent_channels", self.latent_channels), ("cond_width", self.cond_width))
                    if v is not None})
        return out

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> "Schedule":
        """Only JSON, of bounded size, numbers and nesting; every error names the file."""
        try:
            data = untrusted.read_json(path, MAX_BYTES, "schedule")
        except untrusted.FieldError as err:
            raise ScheduleError(str(err)) from None
        return cls.from_json(data, path)


def _optional_integer(model: dict, key: str, high: int) -> Optional[int]:
    """A fingerprint field an older file may lack (None: not known, not compared)."""
    value = model.get(key)
    return None if value is None else untrusted.integer(value, f"model.{key}", 1, high)


def _step_to_json(step: ScheduleStep) -> dict:
    out = asdict(step)
    for name in ("forecast", "start"):
        if not out[name]:
            del out[name]   # a copying prefix step reads the same in version 1
    return out


def _step_from_json(data, where: str, num_blocks: int) -> ScheduleStep:
    u = untrusted
    u.mapping(data, where)
    kind = u.text(data.get("kind"), f"{where}.kind", 16, KINDS)
    mode = u.text(data.get("mode", ""), f"{where}.mode", 16, ("", *MODES) if kind == "full" else MODES)
    cut = u.integer(data.get("cut", 0), f"{where}.cut", 0 if kind == "full" else 1, num_blocks)
    forecast = u.text(data.get("forecast", ""), f"{where}.forecast", 16, ("", *LABELS))
    start = u.integer(data.get("start", 0), f"{where}.start", 0, max(0, cut - 1))
    return ScheduleStep(u.number(data.get("position"), f"{where}.position", 0.0, 1.0),
                        u.number(data.get("sigma"), f"{where}.sigma", 0.0, MAX_SIGMA), kind, cut, mode, forecast,
                        start)


@dataclass(frozen=True)
class SchedulePolicy(StepPolicy):
    """Follows a measured schedule, placed on this run's timeline."""
    schedule: Schedule
    name = "schedule"

    def ranges(self, num_blocks: int):
        return tuple((range(a, c), m) for a, c, m in self.schedule.ranges) or ((range(1), "blockdance"),)

    def start(self, timeline: Timeline, num_blocks: int) -> PolicyRun:
        return ScheduleRun(place(self.schedule, timeline), self.schedule)

    def anchors(self, num_blocks: int) -> int:
        return max([Forecast.parse(f).anchors for f in self.schedule.forecasts], default=1)

    def describe(self, num_blocks: int) -> dict:
        return {"schedule": self.schedule.name}

    def check_model(self, model: ModelFingerprint) -> None:
        self.schedule.check_fingerprint(model)


class ScheduleRun(PlannedRun):
    """A placed schedule that checks again, at the first forward, that the blocks are as wide as the
    ones it was measured on (the second line behind the check when patching, for a model whose
    adapter cannot read its width)."""

    def __init__(self, plan: List[StepAction], schedule: Schedule):
        super().__init__(plan)
        self.schedule = schedule
        self.checked = False

    def decide(self, seen) -> StepAction:
        if not self.checked and seen.block_input is not None:
            width = int(tree_leaves(seen.block_input)[0].shape[-1])
            if self.schedule.width and width != self.schedule.width:
                raise ScheduleError(f"schedule {self.schedule.name!r} was measured on blocks {self.schedule.width} "
                                    f"wide; this model's are {width} wide (another size of "
                                    f"{self.schedule.family}). Calibrate a schedule for this model.")
            self.checked = True
        return super().decide(seen)


def place(schedule: Schedule, timeline: Timeline) -> List[StepAction]:
    """Each step of the run takes the action of the calibrated step whose stretch of the timeline
    holds it. A step caches when the run's next step falls on a calibrated reuse step (for that
    step's range and mode); a reuse step continues only a group of the same range and mode; the first
    step never reuses. A calibrated cache step with no reuse after it is a forecast's anchor: it
    keeps its range when the schedule forecasts with that range. For the calibrated step count and
    scheduler this is the calibrated plan."""
    positions = [s.position for s in schedule.steps]
    anchored = {_range_of(s) for s in schedule.steps if s.forecast}
    actions: List[StepAction] = []
    group: Optional[Tuple[Tuple[int, int, str], int]] = None   # ((start, cut, mode), cache step)
    for k in range(timeline.num_steps):
        s = schedule.steps[_index_at(positions, timeline.positions[k])]
        if s.kind == "reuse" and group is not None and group[0] == _range_of(s):
            forecast = Forecast.parse(s.forecast) if s.forecast else COPY
            actions.append(reuse_step(range(s.start, s.cut), s.mode, group[1], forecast))
            continue
        nxt = _next_reuse(schedule, positions, timeline, k)
        if nxt is not None:
            actions.append(cache_step(range(nxt[0], nxt[1]), nxt[2]))
            group = (nxt, k)
        elif s.kind == "cache" and _range_of(s) in anchored:
            actions.append(cache_step(range(s.start, s.cut), s.mode))
            group = None
        else:
            actions.append(FULL)
            group = None
    return actions


def _range_of(step: ScheduleStep) -> Tuple[int, int, str]:
    return step.start, step.cut, step.mode


def _index_at(positions: List[float], p: float) -> int:
    """The last calibrated step at or before position p (positions are sorted); the first if none."""
    return max(0, bisect.bisect_right(positions, p + STORED_EPS) - 1)


def _next_reuse(schedule: Schedule, positions: List[float], timeline: Timeline, k: int) -> Optional[Tuple[int, int, str]]:
    """(start, cut, mode) when the run's next step falls on a calibrated reuse step, else None."""
    if k + 1 >= timeline.num_steps:
        return None
    s = schedule.steps[_index_at(positions, timeline.positions[k + 1])]
    return _range_of(s) if s.kind == "reuse" else None
