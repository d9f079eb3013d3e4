"""The exact schedule search with forecast groups beside copy groups.

A copy group (search.py) reuses what its cache step p kept. A forecast group extrapolates, at each
of its reuse steps k, from its cache step p and the run's previous computed step q (order 1 over
sigma, blockdance_core/forecast.py), so its error depends on where the previous computed step was.
The dynamic program therefore runs over (p, q) instead of p alone: state (p, q) means steps < p are
decided, step p computes next, and q is the last computed step before p (-1: none). Moves:

    p computes alone           (p, q) -> (p + 1, p)       cost 0
    a group at p to m          (p, q) -> (m + 1, p)       cost sum_k w_k E(q, p, k), saves (m - p) * cut

with E the measured copy error (independent of q) or the measured forecast error; a forecast needs a
previous computed step that holds its range: a lone computed step (the engine keeps the range there
for it) or the cache step of a group of the same cut and mode, so the state also records what the
previous computed step holds. It is exact for this objective, as search() is for copies, and with
forecast=COPY it returns search()'s plan.

Forecast errors are measured on a random subset of the probe's kept values (`max_values`), since
every (q, p, k) triple is scored; the copy errors use all of them, as in search().
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .budget import blocks_to_save
from .actions import StepAction, StepKind, cache_step
from .forecast import COPY, Forecast, weights
from .probe import Measurement
from .search import BudgetUnreachable, Group, Plan, group_extents, lower, option_errors, option_range, step_weights

FORECAST_VALUES = 2048
FORECAST_CUTS = 4          # forecasts are searched for the deepest cuts (where high speedups reuse)
LINEAR = Forecast("taylor", 1)
NO_ANCHOR, LONE_STEP, FIRST_OPTION = 0, 1, 2   # what the previous computed step holds for a forecast


@dataclass(frozen=True)
class ForecastGroup(Group):
    forecast: Forecast = COPY
    anchor: Optional[int] = None     # the previous computed step a forecast reads beside the cache step


@dataclass(frozen=True)
class ForecastPlan(Plan):
    def actions(self) -> List[StepAction]:
        """The plan's actions: a forecast group's reuse steps carry its forecast, and a lone computed
        step a forecast reads keeps its range (a cache step)."""
        out = super().actions()
        for g in self.groups:
            forecast = getattr(g, "forecast", COPY)
            if forecast != COPY:
                for k in g.reuse_steps:
                    out[k] = replace(out[k], forecast=forecast)
            if g.anchor is not None and out[g.anchor].kind is StepKind.FULL:
                out[g.anchor] = cache_step(range(g.start, g.cut), g.mode)
        return out

    def forecasts(self) -> List[str]:
        """The forecast each step reuses with ("" where it does not reuse)."""
        out = [""] * self.num_steps
        for g in self.groups:
            for k in g.reuse_steps:
                out[k] = getattr(g, "forecast", COPY).label
        return out


def forecast_errors(measurement: Measurement, cut: int, mode: str, forecast: Forecast = LINEAR,
                    max_values: int = FORECAST_VALUES) -> np.ndarray:
    """[S + 1, S, S]: E[q + 1, p, k], the relative L1 error of forecasting step k > p from computed
    steps q < p and p (row 0, q = -1: the copy of p); inf where no such forecast exists."""
    feat, base = measurement.features[cut], measurement.bases[cut]
    if feat.shape[-1] > max_values:
        pick = torch.randperm(feat.shape[-1], generator=torch.Generator().manual_seed(cut))[:max_values]
        feat, base = feat[..., pick], base[..., pick]
    feat, base = feat.double(), base.double()
    own = feat - base if mode == "delta" else feat               # what is forecast
    offset = base if mode == "delta" else torch.zeros_like(feat)
    norm = feat.abs().sum(-1).clamp_min(1e-12)                   # [S, rows]
    S = feat.shape[0]
    sigmas = measurement.timeline.sigmas
    out = np.full((S + 1, S, S), math.inf)
    for p in range(S - 1):
        later = slice(p + 1, S)
        copy = ((offset[later] + own[p] - feat[later]).abs().sum(-1) / norm[later]).mean(-1)
        out[0, p, p + 1:] = copy.numpy()
        for q in range(p):
            w = torch.tensor([weights([sigmas[q], sigmas[p]], sigmas[k], forecast) for k in range(p + 1, S)],
                             dtype=torch.float64)                 # [k, 2]
            predicted = offset[later] + w[:, 0, None, None] * own[q] + w[:, 1, None, None] * own[p]
            out[q + 1, p, p + 1:] = ((predicted - feat[later]).abs().sum(-1) / norm[later]).mean(-1).numpy()
    return out


def search_with_forecasts(measurement: Measurement, target_speedup: float, options: Sequence[Tuple[int, str]],
                          forecast: Forecast = LINEAR, forecast_cuts: int = FORECAST_CUTS,
                          weights_kind: str = "dsigma", earliest: int = 1) -> ForecastPlan:
    """The plan of least predicted error reaching `target_speedup`, each group a copy or, for the
    `forecast_cuts` deepest cuts of the options, a forecast (forecast=COPY: the copy search)."""
    if not target_speedup >= 1.0:
        raise ValueError(f"target_speedup={target_speedup!r} must be >= 1.0")
    S, L = measurement.num_steps, measurement.num_blocks
    total = S * L
    need = blocks_to_save(total, target_speedup)
    w = step_weights(measurement.timeline.sigmas, weights_kind)
    prefixes = [o for o in options if option_range(o)[0] == 0]      # forecasts: prefix ranges only
    deepest = sorted({o[0] for o in prefixes})[-forecast_cuts:] if forecast != COPY and forecast_cuts > 0 else []
    anchorable = [o for o in prefixes if o[0] in deepest]            # options whose cache steps are anchors
    slot = {o: FIRST_OPTION + i for i, o in enumerate(anchorable)}
    copy_errors = {}
    for o in options:
        e = option_errors(measurement, o, weights_kind)
        e[:, :earliest] = np.inf
        copy_errors[o] = e
    forecast_errors_by = {}
    for o in anchorable:
        e = forecast_errors(measurement, o[0], o[1], forecast)
        e[:, :, :earliest] = np.inf
        forecast_errors_by[o] = e * w[None, None, :]
    moves = [(o, COPY) for o in options] + [(o, forecast) for o in anchorable]
    A = FIRST_OPTION + len(anchorable)
    best = np.full((S + 1, S + 1, A, total + 1), np.inf)
    back = np.full((S + 1, S + 1, A, total + 1, 4), -1, dtype=np.int16)   # (p, q + 1, anchor state, move)
    best[0, 0, NO_ANCHOR, 0] = 0.0
    for p in range(S):
        states = best[p, :p + 1].reshape((p + 1) * A, total + 1)
        if not np.isfinite(states).any():
            continue
        # A lone computed step and a copy group do not read q: they leave from the best state per budget.
        flat = np.argmin(states, axis=0)
        merged = np.take_along_axis(states, flat[None], axis=0)[0]
        origin = (flat // A, flat % A)
        _relax_from(best[p + 1, p + 1, LONE_STEP], back[p + 1, p + 1, LONE_STEP], merged, origin, 0, 0.0, p, -1)
        for mi, (o, f) in enumerate(moves):
            if f == COPY:
                _group_moves(best, back, copy_errors[o][p], merged, origin, p, mi, _skips(o), slot.get(o, NO_ANCHOR),
                             total)
        # A forecast reads the previous computed step q, which must hold its range: a lone step (kept for
        # it) or the cache step of a group of the same cut and mode.
        for qi in range(1, p + 1):
            for mi, (o, f) in enumerate(moves):
                if f == COPY:
                    continue
                for a in (LONE_STEP, slot[o]):
                    row = best[p, qi, a]
                    if np.isfinite(row).any():
                        _group_moves(best, back, forecast_errors_by[o][qi, p], row,
                                     (np.full(row.shape, qi), np.full(row.shape, a)), p, mi, o[0], slot[o], total)
    final = best[S, :, :, need:]
    if not np.isfinite(final).any():
        raise BudgetUnreachable(f"no reuse plan reaches {target_speedup:.2f}x with the measured cuts "
                                f"{sorted({o[0] for o in options})}")
    qi, a, s = (int(v) for v in np.unravel_index(int(np.argmin(final)), final.shape))
    s += need
    groups, p = [], S
    while p > 0:
        prev, prev_qi, prev_a, mi = (int(v) for v in back[p, qi, a, s])
        if mi >= 0:
            o, f = moves[mi]
            start, c, m = option_range(o)
            if f == COPY:
                err, anchor = float(copy_errors[o][prev, prev + 1:p].sum()), None
            else:
                err, anchor = float(forecast_errors_by[o][prev_qi, prev, prev + 1:p].sum()), prev_qi - 1
            groups.append(ForecastGroup(prev, p - 1, c, m, err, start, forecast=f, anchor=anchor))
            s -= (p - 1 - prev) * (c - start)
        p, qi, a = prev, prev_qi, prev_a
    return ForecastPlan(tuple(reversed(groups)), S, L, target_speedup)


def _skips(option: tuple) -> int:
    start, cut, _ = option_range(option)
    return cut - start


def _group_moves(best, back, e, row, origin, p: int, mi: int, cut: int, lands_in: int, total: int) -> None:
    """Relax every group that starts at p with this move's per-step errors e (reuse steps p+1..),
    landing in anchor state `lands_in` (what its cache step p holds for a later forecast)."""
    for last, skip, cumulative in group_extents(e, p, cut, total):
        _relax_from(best[last + 1, p + 1, lands_in], back[last + 1, p + 1, lands_in], row, origin, skip,
                    cumulative, p, mi)


def _relax_from(target_row, target_back, row, origin, skip: int, cost: float, p: int, mi: int) -> None:
    """Keep the cheaper of each budget entry; back holds (p, q + 1, anchor state, move) per entry."""
    better = lower(target_row, row, skip, cost)
    if better is not None:
        width = len(row) - skip
        moved = target_back[skip:]
        moved[better, 0] = p
        moved[better, 1] = origin[0][:width][better]
        moved[better, 2] = origin[1][:width][better]
        moved[better, 3] = mi
