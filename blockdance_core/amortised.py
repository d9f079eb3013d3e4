"""Amortised calibration: a schedule for a new sampling setting without a calibration run.

Why this works: the search (search.py) needs only the reuse errors E[j, k] of the run's steps, and
those are distances between block features at two points of the sampling trajectory. For a given
model and prompts that trajectory is nearly the same whatever the step count, scheduler or (ODE)
sampler, so E is close to a function of the two steps' positions on the model's timeline; stochastic
samplers (ancestral, SDE) inject noise and have their own, and guidance moves the trajectory a little.

A Library keeps the reuse errors measured (probe runs) on a grid of training settings for one
(cut, mode). For a new run it predicts E at the run's step positions: each entry's errors are read at
those positions by bilinear interpolation (symmetrised, zero on the diagonal), and the entries of the
same sampler kind are averaged with a Gaussian weight on log cfg (bandwidth fitted leave-one-out on
the training entries). The exact search on the prediction gives the schedule, at exactly the
budget's block count, with one range, so it also serves as the closed-loop policy's prior
(ada_prior.py). Saved as safetensors (tensors) with JSON metadata, validated before use.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import untrusted
from .actions import MODES
from .schedule import Schedule
from .search import search
from .timeline import Timeline

FORMAT = "blockdance-amortised"
STOCHASTIC_MARKERS = ("ancestral", "sde", "ddpm", "lcm")   # samplers that inject fresh noise at each step
MAX_ENTRIES = 1000
MAX_STEPS = 10000
MAX_META_CHARS = 2**20
BANDWIDTHS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 1e6)   # candidates for the log-cfg bandwidth
# An entry read outside the stretch of the timeline it measured clamps both steps of a pair to its
# last (or first) step and would predict zero error there; its weight for such a pair falls off by
# e per this much of the timeline outside, so entries that measured the stretch decide it.
COVER_SCALE = 0.01


class AmortisedError(untrusted.FieldError):
    """A library or a request it cannot serve; the message says which and why."""


def stochastic(sampler: str) -> bool:
    """Whether a sampler injects noise at each step (its reuse errors differ from an ODE sampler's)."""
    return any(m in sampler for m in STOCHASTIC_MARKERS)


@dataclass(frozen=True)
class Entry:
    """One training setting's measured reuse errors (errors: [steps, steps], E[j, k] for j < k)."""
    name: str
    sampler: str
    scheduler: str
    steps: int
    cfg: float
    positions: torch.Tensor
    sigmas: torch.Tensor
    errors: torch.Tensor

    @property
    def stochastic(self) -> bool:
        return stochastic(self.sampler)

    def symmetric(self) -> torch.Tensor:
        """E read both ways with a zero diagonal, so interpolation is defined next to the diagonal."""
        upper = torch.triu(torch.nan_to_num(self.errors.double(), posinf=0.0), 1)
        return upper + upper.T

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """This entry's errors read at other step positions (bilinear; clamped at its first and last step)."""
        index = torch.from_numpy(np.interp(positions.double().numpy(), self.positions.double().numpy(),
                                           np.arange(len(self.positions), dtype=np.float64)))
        lo = index.floor().long()
        hi = (lo + 1).clamp(max=len(self.positions) - 1)
        t = index - lo
        m = self.symmetric()
        a0, a1, b0, b1 = lo[:, None], hi[:, None], lo[None, :], hi[None, :]
        ta, tb = t[:, None], t[None, :]
        return ((1 - ta) * (1 - tb) * m[a0, b0] + (1 - ta) * tb * m[a0, b1]
                + ta * (1 - tb) * m[a1, b0] + ta * tb * m[a1, b1])


@dataclass(frozen=True)
class Predicted:
    """The Measurement interface search() reads, with predicted instead of measured errors."""
    cut: int
    mode: str
    num_blocks: int
    timeline: Timeline
    errors: torch.Tensor

    @property
    def cuts(self) -> Tuple[int, ...]:
        return (self.cut,)

    @property
    def num_steps(self) -> int:
        return self.timeline.num_steps

    def reuse_error(self, cut: int, mode: str) -> torch.Tensor:
        if (cut, mode) != (self.cut, self.mode):
            raise AmortisedError(f"the library predicts cut {self.cut} ({self.mode}) only, not cut {cut} ({mode})")
        return self.errors.clone()

    def range_error(self, start: int, cut: int, mode: str) -> torch.Tensor:
        """The search's name for a range's errors (ranges after block 0 are not predicted)."""
        if start != 0:
            raise AmortisedError(f"the library predicts the prefix 0..{self.cut - 1} only, not a range from block {start}")
        return self.reuse_error(cut, mode)


@dataclass
class Library:
    family: str
    num_blocks: int
    width: int
    cut: int
    mode: str
    entries: List[Entry]
    cfg_bandwidth: float = 0.5
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.entries:
            raise AmortisedError("an amortised library needs at least one measured setting")
        if self.mode not in MODES or not 1 <= self.cut <= self.num_blocks:
            raise AmortisedError(f"cut {self.cut} / mode {self.mode!r}: a cut in 1..{self.num_blocks} and a mode in {MODES}")
        if not self.cfg_bandwidth > 0:
            raise AmortisedError(f"cfg_bandwidth={self.cfg_bandwidth!r} must be > 0")

    def weights(self, sampler: str, cfg: float, exclude: Optional[int] = None) -> torch.Tensor:
        """Per entry: same sampler kind only (every entry when none is), Gaussian in log cfg."""
        kind = torch.tensor([e.stochastic == stochastic(sampler) for e in self.entries], dtype=torch.float64)
        if exclude is not None:
            kind[exclude] = 0.0
        if not kind.any():
            kind = torch.ones(len(self.entries), dtype=torch.float64)
            if exclude is not None:
                kind[exclude] = 0.0
        gap = torch.tensor([math.log(max(cfg, 0.5)) - math.log(max(e.cfg, 0.5)) for e in self.entries],
                           dtype=torch.float64)
        w = kind * torch.exp(-0.5 * (gap / self.cfg_bandwidth) ** 2)
        return w if w.sum() > 0 else kind

    def predict(self, timeline: Timeline, sampler: str, cfg: float, exclude: Optional[int] = None) -> torch.Tensor:
        """Predicted E[j, k] ([steps, steps], inf where j >= k) for a run on `timeline`: per step pair, the
        entries' readings averaged with their weight times how well they cover the pair (COVER_SCALE)."""
        if timeline.num_steps < 1:
            raise AmortisedError("the run has no steps to plan")
        w = self.weights(sampler, cfg, exclude)
        positions = torch.tensor(timeline.positions, dtype=torch.float64)
        total = torch.zeros(len(positions), len(positions), dtype=torch.float64)
        weight = torch.zeros_like(total)
        for wi, e in zip(w.tolist(), self.entries):
            if wi <= 0:
                continue
            outside = (float(e.positions[0]) - positions).clamp_min(0) + (positions - float(e.positions[-1])).clamp_min(0)
            cover = wi * torch.exp(-(outside[:, None] + outside[None, :]) / COVER_SCALE)
            total += cover * e.at(positions)
            weight += cover
        out = (total / weight.clamp_min(1e-300)).float()
        steps = timeline.num_steps
        return torch.where(torch.ones(steps, steps, dtype=torch.bool).triu(1), out, torch.tensor(math.inf))

    def schedule(self, timeline: Timeline, target_speedup: float, sampler: str, cfg: float,
                 name: str = "amortised", setting: Optional[dict] = None) -> Schedule:
        """The exact search on the predicted errors: one range, at least the target's blocks saved."""
        predicted = Predicted(self.cut, self.mode, self.num_blocks, timeline, self.predict(timeline, sampler, cfg))
        plan = search(predicted, target_speedup, [(self.cut, self.mode)])
        return Schedule.from_plan(name, self.family, self.width, timeline, plan,
                                  {"amortised": True, "sampler": sampler, "cfg": cfg, **(setting or {})})

    def fit_bandwidth(self, candidates: Sequence[float] = BANDWIDTHS) -> Dict[float, float]:
        """Leave-one-out on the training entries: predict each from the others, mean |log error| over
        its step pairs; keep the best bandwidth. Returns the score of every candidate."""
        scores = {}
        for bw in candidates:
            self.cfg_bandwidth = bw
            losses = []
            for i, e in enumerate(self.entries):
                if sum(1 for o in self.entries if o.stochastic == e.stochastic) < 2:
                    continue
                timeline = Timeline(tuple(e.sigmas.tolist()), tuple(e.positions.tolist()))
                pred = self.predict(timeline, e.sampler, e.cfg, exclude=i)
                mask = torch.ones_like(pred, dtype=torch.bool).triu(1) & torch.isfinite(e.errors)
                losses.append(float((pred[mask].clamp_min(1e-9).log() - e.errors[mask].clamp_min(1e-9).log())
                                    .abs().mean()))
            scores[bw] = sum(losses) / max(len(losses), 1)
        self.cfg_bandwidth = min(scores, key=scores.get)
        return scores

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> None:
        from safetensors.torch import save_file
        tensors = {}
        for i, e in enumerate(self.entries):
            tensors[f"{i}.positions"] = e.positions.float().contiguous()
            tensors[f"{i}.sigmas"] = e.sigmas.float().contiguous()
            tensors[f"{i}.errors"] = e.symmetric().float().contiguous()   # no inf in the file
        meta = {"family": self.family, "num_blocks": self.num_blocks, "width": self.width, "cut": self.cut,
                "mode": self.mode, "cfg_bandwidth": self.cfg_bandwidth, "training": self.training,
                "entries": [{"name": e.name, "sampler": e.sampler, "scheduler": e.scheduler, "steps": e.steps,
                             "cfg": e.cfg} for e in self.entries]}
        save_file(tensors, path, metadata={"format": FORMAT, "meta": json.dumps(meta)})

    @classmethod
    def load(cls, path: str) -> "Library":
        """Only safetensors; metadata and every tensor checked before the library is built."""
        from safetensors import safe_open
        u = untrusted
        try:
            with safe_open(path, framework="pt") as f:
                metadata = f.metadata() or {}
                if metadata.get("format") != FORMAT or len(metadata.get("meta", "")) > MAX_META_CHARS:
                    raise AmortisedError(f"not a BlockDance amortised library (no '{FORMAT}' metadata)")
                data = u.mapping(u.parse_json(metadata["meta"], "metadata"), "metadata")
                num_blocks = u.integer(data.get("num_blocks"), "num_blocks", 1, 10000)
                raw = u.sequence(data.get("entries"), "entries", 1, MAX_ENTRIES)
                names = set(f.keys())
                entries = []
                for i, item in enumerate(raw):
                    where = f"entries[{i}]"
                    u.mapping(item, where)
                    steps = u.integer(item.get("steps"), f"{where}.steps", 1, MAX_STEPS)
                    wanted = {f"{i}.positions": (steps,), f"{i}.sigmas": (steps + 1,), f"{i}.errors": (steps, steps)}
                    got = {}
                    for key, shape in wanted.items():
                        if key not in names:
                            raise AmortisedError(f"tensor {key!r} is missing")
                        t = f.get_tensor(key)
                        if tuple(t.shape) != shape or not t.is_floating_point() or not torch.isfinite(t).all():
                            raise AmortisedError(f"tensor {key!r} is {t.dtype} {list(t.shape)}; expected finite "
                                                 f"floats of shape {list(shape)}")
                        got[key] = t.float()
                    pos = got[f"{i}.positions"]
                    if (pos < 0).any() or (pos > 1).any() or (pos[1:] < pos[:-1]).any() or (got[f"{i}.errors"] < 0).any():
                        raise AmortisedError(f"{where}: positions must rise within [0, 1] and errors be >= 0")
                    entries.append(Entry(u.text(item.get("name"), f"{where}.name"),
                                         u.text(item.get("sampler"), f"{where}.sampler", 64),
                                         u.text(item.get("scheduler"), f"{where}.scheduler", 64), steps,
                                         u.number(item.get("cfg"), f"{where}.cfg", 0.0, 100.0),
                                         pos, got[f"{i}.sigmas"], got[f"{i}.errors"]))
                return cls(u.text(data.get("family"), "family", 64), num_blocks,
                           u.integer(data.get("width"), "width", 0, 2**20), u.integer(data.get("cut"), "cut", 1, num_blocks),
                           u.text(data.get("mode"), "mode", 16, MODES), entries,
                           u.number(data.get("cfg_bandwidth"), "cfg_bandwidth", 1e-6, 1e9),
                           u.flat_record(data.get("training", {}), "training"))
        except (AmortisedError, u.FieldError) as err:
            raise AmortisedError(f"{path}: {err}") from None
        except Exception as err:   # not a safetensors file, truncated, ...
            raise AmortisedError(f"{path}: cannot be read as an amortised library ({type(err).__name__}: {err})") from None


def entry_from(name: str, sampler: str, scheduler: str, cfg: float, measurement, cut: int, mode: str) -> Entry:
    """A library entry from a probe measurement (probe.Measurement) of one training setting."""
    t = measurement.timeline
    return Entry(name, sampler, scheduler, t.num_steps, float(cfg), torch.tensor(t.positions, dtype=torch.float32),
                 torch.tensor(t.sigmas, dtype=torch.float32), measurement.reuse_error(cut, mode).float())
