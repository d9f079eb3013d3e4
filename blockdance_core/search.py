"""Choosing where to reuse: an exact search over groups under a compute budget.

A group is "cache at step j, reuse steps j+1..m, skipping blocks 0..c-1 in mode blockdance or delta".
Its predicted error is the sum over its reuse steps k of w_k * E_c,mode[j, k] (the measured reuse
error, probe.Measurement), and it saves (m - j) * c block executions. A plan is a sequence of groups
and fully computed steps covering the run; the dynamic program below (a shortest path over steps, as
LeMiCa does over a step DAG, with the saved blocks as a second coordinate) returns the plan of least
predicted error among all plans that save at least the blocks the target speedup needs. It is exact
for that objective: every cut, mode and group length is considered at every step.

Step weights: a reuse error at step k moves the latent by about |sigma_k - sigma_k+1| times the
error of the model output (an Euler step), so by default each step's error is weighted by its share
of the sigma range; `weights="uniform"` counts every step alike (the prototype's plain sum).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .actions import FULL, MODES, StepAction, StepKind, cache_step, reuse_step
from .budget import blocks_to_save, ideal_speedup
from .probe import Measurement

@dataclass(frozen=True)
class Group:
    cache_step: int
    last_step: int      # the group's last reuse step
    cut: int            # blocks start..cut-1 skipped on its reuse steps
    mode: str
    error: float        # predicted (weighted) error of its reuse steps
    start: int = 0      # the range's first block (0: a prefix, BlockDance's own case)

    @property
    def skipped(self) -> int:
        """Blocks each of its reuse steps skips."""
        return self.cut - self.start

    @property
    def reuse_steps(self) -> range:
        return range(self.cache_step + 1, self.last_step + 1)


@dataclass(frozen=True)
class Plan:
    groups: Tuple[Group, ...]
    num_steps: int
    num_blocks: int
    target_speedup: float

    @property
    def skipped(self) -> int:
        return sum(len(g.reuse_steps) * g.skipped for g in self.groups)

    @property
    def ideal_speedup(self) -> float:
        total = self.num_steps * self.num_blocks
        return ideal_speedup(total, total - self.skipped)

    @property
    def predicted_error(self) -> float:
        return sum(g.error for g in self.groups)

    def actions(self) -> List[StepAction]:
        """The plan as the engine runs it: one StepAction per step (a plan has this one type)."""
        out = [FULL] * self.num_steps
        for g in self.groups:
            out[g.cache_step] = cache_step(range(g.start, g.cut), g.mode)
            for k in g.reuse_steps:
                out[k] = reuse_step(range(g.start, g.cut), g.mode, g.cache_step)
        return out


class BudgetUnreachable(ValueError):
    """No plan reaches the target speedup within the measured cuts."""


def step_weights(sigmas: Sequence[float], kind: str = "dsigma") -> np.ndarray:
    steps = len(sigmas) - 1
    if kind == "uniform":
        return np.ones(steps)
    if kind != "dsigma":
        raise ValueError(f"weights={kind!r}; allowed: dsigma, uniform")
    d = np.abs(np.diff(np.asarray(sigmas, dtype=np.float64)))
    return d / max(d.mean(), 1e-12)


def group_extents(e, p: int, cut: int, total: int):
    """Every group whose cache step is p, as (its last reuse step, blocks it skips, the summed error of
    its reuse steps p+1..last from the per-step errors e), while the error stays finite and the
    skipped blocks within `total`."""
    cumulative = 0.0
    for last in range(p + 1, len(e)):
        cumulative += e[last]
        skip = (last - p) * cut
        if not math.isfinite(cumulative) or skip > total:
            return
        yield last, skip, cumulative


def option_range(option: tuple) -> Tuple[int, int, str]:
    """(first block, cut, mode) of a search option: (cut, mode) skips the prefix 0..cut-1 (BlockDance),
    (cut, mode, start) the range start..cut-1 (Delta-DiT's rear or middle ranges; delta mode)."""
    return (option[2] if len(option) > 2 else 0), option[0], option[1]


def option_errors(measurement: Measurement, option: tuple, weights: str = "dsigma") -> np.ndarray:
    """[steps, steps] what a group of this option costs the search: E[j, k] of its range, weighted per
    reuse step (step_weights); inf where j >= k."""
    w = step_weights(measurement.timeline.sigmas, weights)
    return measurement.range_error(*option_range(option)).double().numpy() * w[None, :]


def search(measurement: Measurement, target_speedup: float, options: Sequence[tuple] = (),
           weights: str = "dsigma", earliest: int = 1) -> Plan:
    """The plan of least predicted error whose ideal speedup is at least `target_speedup`.
    options: the (cut, mode) pairs a group may use (default: every measured cut in both modes), or
    (cut, mode, start) for a range that starts after block 0 (option_range);
    earliest: the first step that may reuse (a policy deciding at step rho cannot reuse before it)."""
    if not target_speedup >= 1.0:
        raise ValueError(f"target_speedup={target_speedup!r} must be >= 1.0")
    S, L = measurement.num_steps, measurement.num_blocks
    total = S * L
    need = blocks_to_save(total, target_speedup)
    options = tuple(options) or tuple((c, m) for m in MODES for c in measurement.cuts)
    errors: Dict[tuple, np.ndarray] = {option: option_errors(measurement, option, weights) for option in options}
    for e in errors.values():
        e[:, :earliest] = np.inf
    best = np.full((S + 1, total + 1), np.inf)
    best[0, 0] = 0.0
    # back[p, s] = (previous position, option index or -1 for a computed step) of the move that reached p
    back = np.full((S + 1, total + 1, 2), -1, dtype=np.int64)
    for p in range(S):
        row = best[p]
        if not np.isfinite(row).any():
            continue
        _relax(best[p + 1], back[p + 1], row, 0, 0.0, (p, -1))   # step p computes, nothing reused
        for oi, option in enumerate(options):
            start, cut, _ = option_range(option)
            for last, skip, cumulative in group_extents(errors[option][p], p, cut - start, total):
                _relax(best[last + 1], back[last + 1], row, skip, cumulative, (p, oi))
    final = best[S, need:]
    if not np.isfinite(final).any():
        raise BudgetUnreachable(f"no reuse plan reaches {target_speedup:.2f}x with the measured cuts "
                                f"{sorted({o[0] for o in options})}")
    s = need + int(np.argmin(final))
    groups, p = [], S
    while p > 0:
        prev, oi = (int(v) for v in back[p, s])
        if oi >= 0:
            start, c, mode = option_range(options[oi])
            err = float(errors[options[oi]][prev, prev + 1:p].sum())
            groups.append(Group(prev, p - 1, c, mode, err, start))
            s -= (p - 1 - prev) * (c - start)
        p = prev
    return Plan(tuple(reversed(groups)), S, L, target_speedup)


def most_used_option(measurements, targets: Sequence[float], options: Sequence[tuple]) -> Optional[tuple]:
    """The (cut, mode) the search skips most blocks with over these measurements and targets (None when
    it reuses nothing): the one range a single-range policy (Ada, an amortised library) then uses."""
    votes: Dict[tuple, int] = {}
    for measurement in measurements:
        for target in targets:
            for g in search(measurement, target, options).groups:
                votes[(g.cut, g.mode)] = votes.get((g.cut, g.mode), 0) + len(g.reuse_steps) * g.skipped
    return max(votes, key=votes.get) if votes else None


def lower(target_row: np.ndarray, row: np.ndarray, skip: int, cost: float) -> Optional[np.ndarray]:
    """The DP's relaxation: where `row` (cost per budget spent), moved `skip` blocks on and plus
    `cost`, is cheaper than `target_row`, lower it; the mask of the entries lowered, None if none."""
    width = len(row) - skip
    candidate = row[:width] + cost
    current = target_row[skip:]
    better = candidate < current
    if not better.any():
        return None
    current[better] = candidate[better]
    return better


def _relax(target_row: np.ndarray, target_back: np.ndarray, row: np.ndarray, skip: int, cost: float,
           move: Tuple[int, int]) -> None:
    better = lower(target_row, row, skip, cost)
    if better is not None:
        target_back[skip:][better] = move


def predicted_error(measurement: Measurement, actions: Sequence[StepAction], weights: str = "dsigma") -> float:
    """The predicted error of any per-step plan (Plan.actions(), a policy's plan or a run's record),
    on the measured timeline: how search() scores plans, so that its ranking can be checked against
    measured fidelity. Reuse steps skip a prefix of `cut` blocks; a forecasting one reads the anchors
    the engine would keep (the last cache steps, those of its range)."""
    from .forecast import COPY
    from .probe import forecast_error
    if len(actions) != measurement.num_steps:
        raise ValueError(f"{len(actions)} steps given for a {measurement.num_steps}-step measurement")
    w = step_weights(measurement.timeline.sigmas, weights)
    total, source, cache, stores = 0.0, None, {}, []
    for k, action in enumerate(actions):
        cut, mode = action.blocks.stop, action.mode
        if action.kind is StepKind.REUSE:
            if cut not in measurement.features:
                raise ValueError(f"cut {cut} was not measured (measured: {measurement.cuts})")
            if action.forecast != COPY and stores and stores[-1][0] == source:
                kept = stores[-action.forecast.anchors:]
                anchors = [j for j, c, m in kept[:-1] if (c, m) == (cut, mode)] + [source]
                total += w[k] * forecast_error(measurement, cut, mode, anchors, k, action.forecast)
                continue
            first = action.blocks.start
            if (first, cut, mode) not in cache:
                cache[first, cut, mode] = measurement.range_error(first, cut, mode).double().numpy()
            total += w[k] * cache[first, cut, mode][source, k]
        else:
            source = k
            if action.kind is StepKind.CACHE:
                stores.append((k, cut, mode))
    return float(total)
