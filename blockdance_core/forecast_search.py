"""The exact schedule search with forecast groups beside copy groups.

A copy group (search.py) reuses what its cache step p kept. A forecast group extrapolates, at each
of its reuse steps k, from its cache step p and the run's previous computed step q (order 1 over
sigma, blockdance_core/forecast.py), so its error depends on where the previous computed step was.
The dynamic program therefore runs over (p, q) instead of p alone: state (p, q) means steps < p are
decided, step p computes next, and q is the last computed step before p (-1: none). Moves:

    p computes alone           (p, q) -> (p + 1, p)       cost 0
    a group at p to m          (p, q) -> (m + 1, p)       cost sum_k w_k E(q, p, k), saves (m - p) * cut

with E the measured copy error (independent of q) or the measured forecast error; a forecast with
no previous computed step is a copy. It is exact for this objective, as search() is for copies, and
with only copy options it returns search()'s plan.

Forecast errors are measured on a random subset of the probe's kept values (`max_values`), since
every (q, p, k) triple is scored; the copy errors use all of them, as in search().
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .forecast import COPY, Forecast, weights
from .probe import Measurement
from .search import BudgetUnreachable, Group, Plan, step_weights

FORECAST_VALUES = 2048
LINEAR = Forecast("taylor", 1)


@dataclass(frozen=True)
class ForecastGroup(Group):
    forecast: Forecast = COPY
    anchor: Optional[int] = None     # the previous computed step a forecast reads beside the cache step


@dataclass(frozen=True)
class ForecastPlan(Plan):
    def steps(self) -> List[Tuple[str, int, str]]:
        """(kind, cut, mode) per step; a computed step a forecast reads is a cache step too."""
        out = super().steps()
        for g in self.groups:
            if g.anchor is not None and out[g.anchor][0] == "full":
                out[g.anchor] = ("cache", g.cut, g.mode)
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
                          forecasts: Sequence[Forecast] = (COPY, LINEAR), weights_kind: str = "dsigma",
                          earliest: int = 1) -> ForecastPlan:
    """The plan of least predicted error reaching `target_speedup`, each group a copy or a forecast."""
    if not target_speedup >= 1.0:
        raise ValueError(f"target_speedup={target_speedup!r} must be >= 1.0")
    S, L = measurement.num_steps, measurement.num_blocks
    total = S * L
    need = max(0, math.ceil(total * (1 - 1 / target_speedup) - 1e-9))
    w = step_weights(measurement.timeline.sigmas, weights_kind)
    moves: List[Tuple[int, str, Forecast]] = [(c, m, f) for c, m in options for f in forecasts]
    errors: Dict[Tuple[int, str, Forecast], np.ndarray] = {}
    for c, m in options:
        copy = measurement.reuse_error(c, m).double().numpy()
        for f in forecasts:
            e = np.broadcast_to(copy, (S + 1, S, S)).copy() if f == COPY else forecast_errors(measurement, c, m, f)
            e[:, :, :earliest] = np.inf
            errors[(c, m, f)] = e * w[None, None, :]
    # best[p, q + 1]: least error over the budget axis; back: (previous p, previous q + 1, move or -1)
    best = np.full((S + 1, S + 1, total + 1), np.inf)
    back = np.full((S + 1, S + 1, total + 1, 3), -1, dtype=np.int64)
    best[0, 0, 0] = 0.0
    copies = [mi for mi, (_, _, f) in enumerate(moves) if f == COPY]
    extrapolations = [mi for mi, (_, _, f) in enumerate(moves) if f != COPY]
    for p in range(S):
        # Copies and a lone computed step do not depend on q: they leave from the best q per budget.
        merged_q = np.argmin(best[p, :p + 1], axis=0)
        merged = np.take_along_axis(best[p, :p + 1], merged_q[None], axis=0)[0]
        if np.isfinite(merged).any():
            _relax_from(best[p + 1, p + 1], back[p + 1, p + 1], merged, merged_q, 0, 0.0, p, -1)
            for mi in copies:
                _group_moves(best, back, errors[moves[mi]][0, p], merged, merged_q, p, mi, moves[mi][0], total)
        for qi in range(1, p + 1):   # extrapolations read the previous computed step q = qi - 1
            row = best[p, qi]
            if not np.isfinite(row).any():
                continue
            q_of = np.full(row.shape, qi)
            for mi in extrapolations:
                _group_moves(best, back, errors[moves[mi]][qi, p], row, q_of, p, mi, moves[mi][0], total)
    final = best[S, :, need:]
    if not np.isfinite(final).any():
        raise BudgetUnreachable(f"no reuse plan reaches {target_speedup:.2f}x with the measured cuts "
                                f"{sorted({c for c, _ in options})}")
    qi, s = np.unravel_index(int(np.argmin(final)), final.shape)
    s += need
    groups, p = [], S
    while p > 0:
        prev, prev_qi, mi = (int(v) for v in back[p, qi, s])
        if mi >= 0:
            c, m, f = moves[mi]
            err = float(errors[(c, m, f)][prev_qi, prev, prev + 1:p].sum())
            anchor = prev_qi - 1 if f != COPY and prev_qi > 0 else None
            groups.append(ForecastGroup(prev, p - 1, c, m, err, f if anchor is not None else COPY, anchor))
            s -= (p - 1 - prev) * c
        p, qi = prev, prev_qi
    return ForecastPlan(tuple(reversed(groups)), S, L, target_speedup)


def _group_moves(best, back, e, row, row_q, p: int, mi: int, cut: int, total: int) -> None:
    """Relax every group that starts at p with this move's per-step errors e (reuse steps p+1..)."""
    S = len(e)
    cumulative = 0.0
    for last in range(p + 1, S):
        cumulative += e[last]
        skip = (last - p) * cut
        if not math.isfinite(cumulative) or skip > total:
            break
        _relax_from(best[last + 1, p + 1], back[last + 1, p + 1], row, row_q, skip, cumulative, p, mi)


def _relax_from(target_row, target_back, row, row_q, skip: int, cost: float, p: int, mi: int) -> None:
    """_relax with the previous state's q per budget entry (back holds (p, q + 1, move))."""
    width = len(row) - skip
    candidate = row[:width] + cost
    current = target_row[skip:]
    better = candidate < current
    if better.any():
        current[better] = candidate[better]
        moved = target_back[skip:]
        moved[better, 0] = p
        moved[better, 1] = row_q[:width][better]
        moved[better, 2] = mi
