"""Measuring where features are stable: one uncached sampling run, watched at candidate cut points.

For every step k and every candidate cut c (reuse skips blocks 0..c-1) the probe keeps what block
c-1 outputs, F_c(k), and the input of block 0 mapped into that block's layout, F_in(k). From those,
the reuse error of every (cache step j, reuse step k > j) pair follows without running anything
again: the relative L1 distance between what the deeper blocks would receive on reuse and what they
receive when computing,

    blockdance:  |F_c(j) - F_c(k)| / |F_c(k)|
    delta:       |F_in(k) + F_c(j) - F_in(j) - F_c(k)| / |F_c(k)|

averaged over the batch rows (conditioning chunks and samples). This is a first-order proxy: it
compares against the uncached trajectory and ignores how a reuse moves the later steps.

Memory stays bounded: per row and cut only `max_values` elements are kept, a fixed random subset
of the flattened state (tokens x channels) drawn once per layout, so the L1 means are unbiased
estimates; they are kept in float32 on the CPU. Flux at 1024 px with 8 cuts, 30 steps and CFG
keeps about 30 MB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .actions import FULL, StepAction
from .policy import Observation, PolicyRun, StepPolicy
from .timeline import Timeline
from .tree import tree_leaves

DEFAULT_MAX_VALUES = 16384


def candidate_cuts(num_blocks: int, count: int = 24) -> Tuple[int, ...]:
    """Cut points (blocks skipped) to measure: every one for stacks of up to `count` blocks, else
    `count` points from a sixth of the stack to all of it, denser towards the deep end where the
    cheap-but-faithful cuts are, plus the paper's depths 0.5 and 0.75."""
    if num_blocks <= count:
        return tuple(range(1, num_blocks + 1))
    fractions = [1 - (1 - i / (count - 1)) ** 1.5 * (5 / 6) for i in range(count)] + [0.5, 0.75]
    return tuple(sorted({min(num_blocks, max(1, round(f * num_blocks))) for f in fractions}))


@dataclass(frozen=True)
class ProbePolicy(StepPolicy):
    """Computes every step in full while watching the candidate cut points. Each run's probe leaves
    on its record (`record.result`, a ProbeRun), where the measurement is read after sampling."""
    cuts: Tuple[int, ...]
    max_values: int = DEFAULT_MAX_VALUES
    name = "probe"

    def ranges(self, num_blocks: int):
        return ((range(max(self.cuts)), "blockdance"),)

    def start(self, timeline: Timeline, num_blocks: int) -> "ProbeRun":
        return ProbeRun(self.cuts, timeline, num_blocks, self.max_values)


class ProbeRun(PolicyRun):
    def __init__(self, cuts: Sequence[int], timeline: Timeline, num_blocks: int, max_values: int):
        self.cuts = tuple(cuts)
        self.timeline = timeline
        self.num_blocks = num_blocks
        self.max_values = max_values
        self.observes = frozenset({0, *(c - 1 for c in self.cuts)})
        self.observes_inputs = frozenset({0})
        self._block0: Dict[int, Any] = {}           # step -> this forward's block-0 input (full, transient)
        self._rows: Dict[Tuple[int, int], Tuple[int, List[torch.Tensor], List[torch.Tensor]]] = {}
        self._picks: Dict[int, torch.Tensor] = {}
        self.width: Optional[int] = None

    def decide(self, seen: Observation) -> StepAction:
        return FULL

    def result(self) -> "ProbeRun":
        return self

    def see(self, step, evaluation, index, block_input, block_output, to_stage) -> None:
        if index == 0:
            self._block0[step] = block_input
            if self.width is None:
                self.width = int(tree_leaves(block_input)[0].shape[-1])
        for c in self.cuts:
            if c - 1 != index or step not in self._block0:
                continue
            base = self._block0[step]
            if to_stage is not None and _layout(base) != _layout(block_output):
                base = to_stage(base)
            feat, base = _flatten(block_output), _flatten(base)
            pick = self._pick(feat.shape[1])
            kept = self._rows.get((c, step))
            if kept is None or kept[0] != evaluation:   # a later evaluation of the step replaces it (Heun)
                kept = self._rows[(c, step)] = (evaluation, [], [])
            kept[1].append(feat[:, pick].detach().float().cpu())
            kept[2].append(base[:, pick].detach().float().cpu())
        if index == max(self.cuts) - 1:
            self._block0.pop(step, None)

    def _pick(self, size: int) -> torch.Tensor:
        """The values kept of a state of `size` values per row: the same ones at every cut of one layout,
        so the change a block range makes (F_c - F_a) is measured value by value."""
        if size not in self._picks:
            if size <= self.max_values:
                self._picks[size] = torch.arange(size)
            else:
                g = torch.Generator().manual_seed(1000 + size)
                self._picks[size] = torch.randperm(size, generator=g)[:self.max_values].sort().values
        return self._picks[size]

    def measurement(self) -> "Measurement":
        steps = self.timeline.num_steps
        features, bases = {}, {}
        for c in self.cuts:
            rows = [self._rows.get((c, k)) for k in range(steps)]
            if any(r is None for r in rows):
                missing = [k for k, r in enumerate(rows) if r is None]
                raise ValueError(f"the measuring run never reached block {c - 1} at steps {missing[:5]}: "
                                 "the sampler did not visit every step of its schedule")
            features[c] = torch.stack([torch.cat(r[1]) for r in rows])
            bases[c] = torch.stack([torch.cat(r[2]) for r in rows])
        return Measurement(self.cuts, self.num_blocks, self.timeline, features, bases, self.width or 0)


def _layout(state: Any) -> tuple:
    return tuple(tuple(t.shape[1:]) for t in tree_leaves(state))


def _flatten(state: Any) -> torch.Tensor:
    """[rows, values]: every stream of the state flattened per batch row (None streams dropped)."""
    leaves = tree_leaves(state)
    return torch.cat([t.reshape(t.shape[0], -1) for t in leaves], dim=1)


@dataclass
class Measurement:
    cuts: Tuple[int, ...]                 # candidate cut points (blocks skipped)
    num_blocks: int
    timeline: Timeline
    features: Dict[int, torch.Tensor]     # cut -> [steps, rows, values]: F_c(k), subsampled
    bases: Dict[int, torch.Tensor]        # cut -> [steps, rows, values]: F_in(k) in that cut's layout
    width: int                            # hidden width seen at block 0 (part of the model's fingerprint)

    @property
    def num_steps(self) -> int:
        return self.timeline.num_steps

    def reuse_error(self, cut: int, mode: str) -> torch.Tensor:
        """[steps, steps]: E[j, k] for cache step j < reuse step k (inf elsewhere)."""
        feat = self.features[cut]
        base = self.bases[cut]
        steps = feat.shape[0]
        norm = feat.abs().sum(-1).clamp_min(1e-12)     # [steps, rows]
        errors = torch.full((steps, steps), math.inf)
        for j in range(steps - 1):
            if mode == "delta":
                predicted = base[j + 1:] + (feat[j] - base[j])
            else:
                predicted = feat[j].expand_as(feat[j + 1:])
            errors[j, j + 1:] = ((predicted - feat[j + 1:]).abs().sum(-1) / norm[j + 1:]).mean(-1)
        return errors

    def range_error(self, start: int, cut: int, mode: str) -> torch.Tensor:
        """[steps, steps]: E[j, k] for a group that skips blocks start..cut-1 (start 0: reuse_error). A
        range after block 0 reuses in delta mode: at step k its input F_start(k) plus the change the
        range made at the cache step, F_cut(j) - F_start(j)."""
        if start == 0:
            return self.reuse_error(cut, mode)
        if mode != "delta" or start not in self.features or cut not in self.features:
            raise ValueError(f"blocks {start}..{cut - 1}: a range after block 0 needs delta mode and both ends "
                             f"measured (measured cuts: {self.cuts})")
        first, feat = self.features[start], self.features[cut]
        if first.shape != feat.shape:
            raise ValueError(f"blocks {start}..{cut - 1} cross a change of layout; measure within one stage")
        steps = feat.shape[0]
        norm = feat.abs().sum(-1).clamp_min(1e-12)
        errors = torch.full((steps, steps), math.inf)
        for j in range(steps - 1):
            predicted = first[j + 1:] + (feat[j] - first[j])
            errors[j, j + 1:] = ((predicted - feat[j + 1:]).abs().sum(-1) / norm[j + 1:]).mean(-1)
        return errors

    def step_change(self) -> torch.Tensor:
        """[cuts, steps]: relative change of F_c from the previous step (the paper's similarity
        analysis, for the heat map); step 0 has none (nan)."""
        out = torch.full((len(self.cuts), self.num_steps), math.nan)
        for i, c in enumerate(self.cuts):
            feat = self.features[c]
            if self.num_steps > 1:
                out[i, 1:] = ((feat[1:] - feat[:-1]).abs().sum(-1) / feat[1:].abs().sum(-1).clamp_min(1e-12)).mean(-1)
        return out


def forecast_error(measurement: "Measurement", cut: int, mode: str, anchors: Sequence[int], step: int,
                   forecast) -> float:
    """The measured relative L1 error of forecasting F_c at `step` from the computed `anchors` (steps,
    oldest first), as reuse_error does for a copy and as the engine forecasts (same coordinate and
    range): blockdance forecasts the cut's output, delta the skipped blocks' own change (added to the
    current input)."""
    from .forecast import weights
    coords, domain = forecast.coordinates(measurement.timeline.sigmas)
    w = torch.tensor(weights([coords[a] for a in anchors], coords[step], forecast, domain), dtype=torch.float32)
    feat, base = measurement.features[cut], measurement.bases[cut]
    idx = list(anchors)
    own = feat[idx] - base[idx] if mode == "delta" else feat[idx]          # [anchors, rows, values]
    predicted = torch.einsum("a,arv->rv", w, own) + (base[step] if mode == "delta" else 0)
    norm = feat[step].abs().sum(-1).clamp_min(1e-12)
    return float(((predicted - feat[step]).abs().sum(-1) / norm).mean())
