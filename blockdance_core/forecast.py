"""Forecasting a block feature at a skipped step from the features of steps that computed it.

A reuse step copies what its cache step kept; a forecast extrapolates from the last few computed
steps (anchors) to the current position on the sampling timeline:

- `taylor` (TaylorSeer-style): the Newton polynomial through the last order + 1 anchors, i.e. finite
  differences on the real, uneven spacing of the timeline. Order 0 is a copy; order 1 and 2 are
  exact for features that are linear or quadratic in the position.
- `chebyshev` (Spectrum-style): a ridge fit of Chebyshev polynomials T_0..T_degree over all anchors
  (their span and the target mapped onto [-1, 1]), evaluated at the current position.

The coordinate is the forecast's `over`: the sigma (features follow the model's input, sigma, most
closely; the pack's default) or the step index (TaylorSeer's and Spectrum's). `window` lets a fit
read more anchors than its order needs (Spectrum fits all computed steps); a Chebyshev fit maps the
caller's `domain` (the run's whole coordinate range, as Spectrum maps its steps) onto [-1, 1].

Both are linear in the anchors, so a forecast is a weighted sum of the anchor tensors with weights
that depend only on positions: the engine combines tensors with `combine`, and the calibrator scores
a forecast on its measurement with the same weights (`weights`). Weights are computed in float64 on
the CPU; the sum runs where the features live, in their dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import re

import numpy as np

from .tree import tree_map

METHODS = ("copy", "taylor", "chebyshev")
COORDINATES = ("sigma", "step")
MAX_ORDER = 4
_LABEL = re.compile(r"(taylor|chebyshev)(\d+)(?:-w(\d+))?(-step)?(?:-r([0-9.]+(?:e[-+]?\d+)?))?")
RIDGE = 1e-3   # ridge penalty on the Chebyshev coefficients (Spectrum's own is 0.1 over 50 steps)


@dataclass(frozen=True)
class Forecast:
    """How a reuse step turns its anchors into features: `copy` (order 0) or an extrapolation."""
    method: str = "copy"
    order: int = 0
    window: int = 0          # anchors read; 0: order + 1 (a fit through exactly as many as it needs)
    over: str = "sigma"      # the coordinate extrapolated along (COORDINATES)
    ridge: float = RIDGE     # chebyshev: the penalty on its coefficients

    def __post_init__(self):
        if self.over not in COORDINATES or not 0 <= self.window <= 256 or not self.ridge >= 0:
            raise ValueError(f"forecast over={self.over!r} window={self.window!r} ridge={self.ridge!r}; "
                             f"allowed: over in {COORDINATES}, window 0..256, ridge >= 0")
        if self.method not in METHODS:
            raise ValueError(f"forecast method {self.method!r}; allowed: {', '.join(METHODS)}")
        if not 0 <= self.order <= MAX_ORDER or (self.method == "copy") != (self.order == 0):
            raise ValueError(f"forecast order {self.order!r} for {self.method!r}: copy has order 0, "
                             f"taylor and chebyshev 1..{MAX_ORDER}")

    @property
    def anchors(self) -> int:
        """How many computed steps the forecast reads (the engine keeps that many per chunk)."""
        return max(self.order + 1, self.window)

    @property
    def label(self) -> str:
        """Its name, which `parse` reads back: method and order, then any window, coordinate and ridge
        that differ from the defaults (e.g. "taylor1", "chebyshev4-w30-step-r0.1")."""
        if self.method == "copy":
            return "copy"
        extra = (f"-w{self.window}" if self.window else "") + ("-step" if self.over == "step" else "")
        if self.method == "chebyshev" and self.ridge != RIDGE:
            extra += f"-r{self.ridge:g}"
        return f"{self.method}{self.order}{extra}"

    @classmethod
    def parse(cls, label: str) -> "Forecast":
        """The forecast a label names, as `label` writes it."""
        if label == "copy":
            return COPY
        match = _LABEL.fullmatch(label) if isinstance(label, str) else None
        try:
            if match is None:
                raise ValueError
            method, order, window, step, ridge = match.groups()
            return cls(method, int(order), int(window or 0), "step" if step else "sigma",
                       float(ridge) if ridge else RIDGE)
        except ValueError:
            raise ValueError(f"forecast {label!r}; allowed: {', '.join(LABELS)} (optionally -w<anchors>, "
                             "-step, -r<ridge>)") from None

    def coordinates(self, sigmas: Sequence[float]) -> Tuple[List[float], Tuple[float, float]]:
        """Each step's coordinate along which this forecast extrapolates, and the run's whole range of
        it (what a Chebyshev fit maps onto [-1, 1]), from the run's sigmas (one more than its steps)."""
        steps = len(sigmas) - 1
        if self.over == "step":
            return [float(k) for k in range(steps)], (0.0, float(steps))
        return [float(s) for s in sigmas[:steps]], (float(sigmas[-1]), float(sigmas[0]))


COPY = Forecast()
LABELS = ("copy",) + tuple(f"{m}{o}" for m in METHODS[1:] for o in range(1, MAX_ORDER + 1))


def weights(positions: Sequence[float], at: float, forecast: Forecast,
            domain: Optional[Tuple[float, float]] = None) -> List[float]:
    """Weights of the anchors (oldest first) whose sum is the forecast at position `at`. With fewer
    anchors than the forecast needs, it falls back to the highest order they allow (one: a copy).
    domain: the coordinate range a Chebyshev fit maps onto [-1, 1] (default: the anchors and `at`)."""
    p = np.asarray(positions, dtype=np.float64)
    if len(p) == 0:
        raise ValueError("a forecast needs at least one anchor")
    if forecast.method == "copy" or len(p) == 1:
        return [0.0] * (len(p) - 1) + [1.0]
    if forecast.method == "taylor":
        return _newton_weights(p, at, min(forecast.order, len(p) - 1))
    return _chebyshev_weights(p, at, min(forecast.order, len(p) - 1), forecast.ridge, domain)


def _newton_weights(p: np.ndarray, at: float, order: int) -> List[float]:
    """Lagrange form of the polynomial through the last order + 1 anchors (the Newton polynomial)."""
    used = p[-(order + 1):]
    w = np.ones(order + 1)
    for i in range(order + 1):
        for j in range(order + 1):
            if i != j:
                w[i] *= (at - used[j]) / (used[i] - used[j])
    return [0.0] * (len(p) - order - 1) + w.tolist()


def _chebyshev_weights(p: np.ndarray, at: float, degree: int, ridge: float,
                       domain: Optional[Tuple[float, float]]) -> List[float]:
    lo, hi = domain if domain is not None else (min(p.min(), at), max(p.max(), at))
    lo, hi = min(lo, hi), max(lo, hi)
    scale = 2.0 / (hi - lo) if hi > lo else 1.0
    basis = np.polynomial.chebyshev.chebvander((p - lo) * scale - 1.0, degree)     # [anchors, degree + 1]
    target = np.polynomial.chebyshev.chebvander(np.array([(at - lo) * scale - 1.0]), degree)[0]
    gram = basis.T @ basis + ridge * np.eye(degree + 1)
    return (target @ np.linalg.solve(gram, basis.T)).tolist()


def combine(anchors: Sequence[Any], anchor_weights: Sequence[float]) -> Any:
    """sum_i w_i * anchor_i over trees of tensors (dicts, tuples; None leaves stay None)."""
    pairs = [(a, w) for a, w in zip(anchors, anchor_weights) if w != 0.0]

    def weighted(*leaves):
        out = leaves[0] * pairs[0][1]
        for leaf, (_, w) in zip(leaves[1:], pairs[1:]):
            out = out + leaf * w
        return out

    return tree_map(weighted, *(a for a, _ in pairs))
