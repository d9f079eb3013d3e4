"""Forecasting a block feature at a skipped step from the features of steps that computed it.

A reuse step copies what its cache step kept; a forecast extrapolates from the last few computed
steps (anchors) to the current position on the sampling timeline:

- `taylor` (TaylorSeer-style): the Newton polynomial through the last order + 1 anchors, i.e. finite
  differences on the real, uneven spacing of the timeline. Order 0 is a copy; order 1 and 2 are
  exact for features that are linear or quadratic in the position.
- `chebyshev` (Spectrum-style): a ridge fit of Chebyshev polynomials T_0..T_degree over all anchors
  (their span and the target mapped onto [-1, 1]), evaluated at the current position.

The coordinate is the caller's: the timeline position or the sigma (features follow the model's
input, sigma, most closely); the weights only need the anchors' and the target's coordinates.

Both are linear in the anchors, so a forecast is a weighted sum of the anchor tensors with weights
that depend only on positions: the engine combines tensors with `combine`, and the calibrator scores
a forecast on its measurement with the same weights (`weights`). Weights are computed in float64 on
the CPU; the sum runs where the features live, in their dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence

import numpy as np

from .tree import tree_map

METHODS = ("copy", "taylor", "chebyshev")
MAX_ORDER = 3
RIDGE = 1e-3   # Spectrum's ridge penalty, on the Chebyshev coefficients


@dataclass(frozen=True)
class Forecast:
    """How a reuse step turns its anchors into features: `copy` (order 0) or an extrapolation."""
    method: str = "copy"
    order: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"forecast method {self.method!r}; allowed: {', '.join(METHODS)}")
        if not 0 <= self.order <= MAX_ORDER or (self.method == "copy") != (self.order == 0):
            raise ValueError(f"forecast order {self.order!r} for {self.method!r}: copy has order 0, "
                             f"taylor and chebyshev 1..{MAX_ORDER}")

    @property
    def anchors(self) -> int:
        """How many computed steps the forecast reads (the engine keeps that many per chunk)."""
        return self.order + 1

    @property
    def label(self) -> str:
        return "copy" if self.method == "copy" else f"{self.method}{self.order}"


COPY = Forecast()


def weights(positions: Sequence[float], at: float, forecast: Forecast) -> List[float]:
    """Weights of the anchors (oldest first) whose sum is the forecast at position `at`. With fewer
    anchors than the forecast needs, it falls back to the highest order they allow (one: a copy)."""
    p = np.asarray(positions, dtype=np.float64)
    if len(p) == 0:
        raise ValueError("a forecast needs at least one anchor")
    if forecast.method == "copy" or len(p) == 1:
        return [0.0] * (len(p) - 1) + [1.0]
    if forecast.method == "taylor":
        return _newton_weights(p, at, min(forecast.order, len(p) - 1))
    return _chebyshev_weights(p, at, min(forecast.order, len(p) - 1))


def _newton_weights(p: np.ndarray, at: float, order: int) -> List[float]:
    """Lagrange form of the polynomial through the last order + 1 anchors (the Newton polynomial)."""
    used = p[-(order + 1):]
    w = np.ones(order + 1)
    for i in range(order + 1):
        for j in range(order + 1):
            if i != j:
                w[i] *= (at - used[j]) / (used[i] - used[j])
    return [0.0] * (len(p) - order - 1) + w.tolist()


def _chebyshev_weights(p: np.ndarray, at: float, degree: int) -> List[float]:
    lo, hi = min(p.min(), at), max(p.max(), at)
    scale = 2.0 / (hi - lo) if hi > lo else 1.0
    basis = np.polynomial.chebyshev.chebvander((p - lo) * scale - 1.0, degree)     # [anchors, degree + 1]
    target = np.polynomial.chebyshev.chebvander(np.array([(at - lo) * scale - 1.0]), degree)[0]
    gram = basis.T @ basis + RIDGE * np.eye(degree + 1)
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
