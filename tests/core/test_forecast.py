"""Forecasting block features (blockdance_core/forecast.py): exact where it must be, a copy where it
must be, and scored on a measurement the way a copy is."""
import math

import pytest
import torch

from blockdance_core import Timeline
from blockdance_core.forecast import COPY, Forecast, combine, weights
from blockdance_core.probe import Measurement, forecast_error

UNEVEN = [0.0, 0.07, 0.2, 0.41, 0.55]   # a timeline with uneven spacing, as shifted schedules give


def feature(position, coefficients, shape=(2, 5, 3)):
    g = torch.Generator().manual_seed(0)
    terms = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in coefficients]
    return sum(c * t * position ** i for i, (c, t) in enumerate(zip(coefficients, terms)))


@pytest.mark.parametrize("order, coefficients", [(1, [1.0, -2.0]), (2, [0.5, 1.5, -3.0]), (3, [1, -1, 2, 0.7])])
def test_taylor_is_exact_for_polynomials_of_its_order_on_an_uneven_timeline(order, coefficients):
    anchors = [feature(p, coefficients) for p in UNEVEN]
    at = 0.73
    predicted = combine(anchors, weights(UNEVEN, at, Forecast("taylor", order)))
    assert torch.allclose(predicted, feature(at, coefficients), rtol=1e-9, atol=1e-9)


def test_taylor_below_the_features_order_is_not_exact():
    """The exactness above is the method's, not the test's: a quadratic is missed by order 1."""
    anchors = [feature(p, [0.5, 1.5, -3.0]) for p in UNEVEN]
    predicted = combine(anchors, weights(UNEVEN, 0.73, Forecast("taylor", 1)))
    assert not torch.allclose(predicted, feature(0.73, [0.5, 1.5, -3.0]), rtol=1e-3)


@pytest.mark.parametrize("degree, coefficients", [(1, [1.0, -2.0]), (2, [0.5, 1.5, -3.0])])
def test_chebyshev_ridge_fits_a_polynomial_of_its_degree_to_ridge_tolerance(degree, coefficients):
    anchors = [feature(p, coefficients) for p in UNEVEN]
    predicted = combine(anchors, weights(UNEVEN, 0.73, Forecast("chebyshev", degree)))
    target = feature(0.73, coefficients)
    assert float((predicted - target).norm() / target.norm()) < 1e-2


def test_copy_and_too_few_anchors_fall_back_to_the_last_anchor():
    anchors = [torch.full((2,), float(i)) for i in range(3)]
    assert weights([0.1, 0.2, 0.3], 0.4, COPY) == [0.0, 0.0, 1.0]
    assert weights([0.3], 0.4, Forecast("taylor", 2)) == [1.0]
    w = weights([0.2, 0.3], 0.4, Forecast("taylor", 2))          # two anchors: order 1
    assert w == pytest.approx([-1.0, 2.0])
    assert torch.equal(combine(anchors, weights([0.1, 0.2, 0.3], 0.4, COPY)), anchors[-1])


def test_combine_keeps_the_state_tree_and_its_none_streams():
    a = {"img": torch.ones(2, 3), "txt": None}
    b = {"img": 3 * torch.ones(2, 3), "txt": None}
    out = combine([a, b], [-1.0, 2.0])
    assert out["txt"] is None and torch.equal(out["img"], 5 * torch.ones(2, 3))


@pytest.mark.parametrize("method, order", [("copy", 1), ("taylor", 0), ("taylor", 5), ("spline", 1)])
def test_bad_forecasts_are_refused(method, order):
    with pytest.raises(ValueError, match="forecast"):
        Forecast(method, order)


def measurement_of(trajectory, positions, sigmas):
    """A one-cut measurement whose cut output follows `trajectory` (rows x values per step)."""
    feats = torch.stack([trajectory(s) for s in sigmas[:-1]]).float()
    bases = torch.stack([0.5 * trajectory(s) + 1.0 for s in sigmas[:-1]]).float()
    return Measurement((3,), 4, Timeline(tuple(sigmas), tuple(positions)), {3: feats}, {3: bases}, 8)


def test_forecast_error_of_a_copy_is_the_reuse_error():
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(8, 2, 16, generator=g)
    sigmas = [1.0, 0.8, 0.55, 0.3, 0.15, 0.05, 0.0]
    m = Measurement((3,), 4, Timeline(tuple(sigmas), tuple(1 - s for s in sigmas[:-1])),
                    {3: noise[:6]}, {3: noise[2:]}, 8)
    for mode in ("blockdance", "delta"):
        errors = m.reuse_error(3, mode)
        assert forecast_error(m, 3, mode, [1], 4, COPY) == pytest.approx(float(errors[1, 4]), rel=1e-5)


def test_forecast_error_is_zero_for_a_trajectory_linear_in_sigma_and_not_for_a_copy():
    direction = torch.linspace(-1, 1, 32).reshape(2, 16)
    sigmas = [1.0, 0.85, 0.6, 0.42, 0.25, 0.1, 0.0]
    m = measurement_of(lambda s: 2.0 + 3.0 * s * direction, [k / 6 for k in range(6)], sigmas)
    linear = Forecast("taylor", 1)
    for mode in ("blockdance", "delta"):
        assert forecast_error(m, 3, mode, [1, 2], 4, linear) < 1e-5
        assert forecast_error(m, 3, mode, [2], 4, COPY) > 0.1
    assert math.isfinite(forecast_error(m, 3, "blockdance", [0, 1, 2], 5, Forecast("chebyshev", 2)))


# ------------------------------------------------------------------------------ the search
from blockdance_core.forecast_search import LINEAR, search_with_forecasts  # noqa: E402
from blockdance_core.search import search, step_weights  # noqa: E402


def synthetic(steps=6, cuts=(1, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    sigmas = [1 - (k / steps) ** 1.3 for k in range(steps + 1)]
    feats = {c: torch.randn(steps, 2, 10, generator=g).cumsum(0) for c in cuts}
    bases = {c: torch.randn(steps, 2, 10, generator=g).cumsum(0) for c in cuts}
    return Measurement(tuple(cuts), max(cuts), Timeline.build(sigmas), feats, bases, 10)


def brute_force(m, target, options):
    """Least predicted error over every plan in which each group copies or forecasts (order 1 from its
    cache step and the plan's previous computed step, which must hold the group's range: a lone
    computed step, or the cache step of a group of the same cut and mode), scored step by step."""
    S, total = m.num_steps, m.num_steps * m.num_blocks
    w = step_weights(m.timeline.sigmas)

    def plans(p):
        if p == S:
            yield []
            return
        for rest in plans(p + 1):
            yield [None] + rest
        for last in range(p + 1, S):
            for cut, mode in options:
                for f in (COPY, LINEAR):
                    for rest in plans(last + 1):
                        yield [("cache", cut, mode, f)] + [("reuse", cut, mode, f)] * (last - p) + rest

    best = math.inf
    for plan in plans(0):
        if total / (total - sum(s[1] for s in plan if s and s[0] == "reuse")) < target - 1e-9:
            continue
        error, computed, holds = 0.0, [], {}
        for k, s in enumerate(plan):
            if s is None or s[0] == "cache":
                computed.append(k)
                holds[k] = "any" if s is None else s[1:3]
                continue
            _, cut, mode, f = s
            if f == LINEAR:
                if len(computed) < 2 or holds[computed[-2]] not in ("any", (cut, mode)):
                    error = math.inf
                    break
                error += w[k] * forecast_error(m, cut, mode, computed[-2:], k, f)
            else:
                error += w[k] * forecast_error(m, cut, mode, computed[-1:], k, COPY)
        best = min(best, error)
    return best


@pytest.mark.parametrize("target", [1.3, 1.7])
def test_the_search_with_forecasts_is_exact(target):
    m = synthetic()
    options = [(1, "blockdance"), (2, "delta")]
    plan = search_with_forecasts(m, target, options)
    assert plan.ideal_speedup >= target - 1e-9
    assert plan.predicted_error == pytest.approx(brute_force(m, target, options), rel=1e-6)
    assert plan.predicted_error <= search(m, target, options).predicted_error + 1e-12


@pytest.mark.parametrize("target", [1.2, 1.5, 2.0])
def test_with_copies_only_it_is_the_copy_search(target):
    m = synthetic(seed=3)
    options = [(1, "blockdance"), (2, "blockdance"), (2, "delta")]
    plan, copy = search_with_forecasts(m, target, options, forecast=COPY), search(m, target, options)
    assert plan.predicted_error == pytest.approx(copy.predicted_error, rel=1e-9)
    assert plan.actions() == copy.actions() and set(plan.forecasts()) <= {"", "copy"}


def test_on_features_linear_in_sigma_the_search_forecasts_and_reads_a_computed_anchor():
    steps, direction = 8, torch.linspace(-1, 1, 20).reshape(2, 10)
    sigmas = [1 - (k / steps) ** 1.5 for k in range(steps + 1)]
    feats = {3: torch.stack([1.0 + 4.0 * s * direction for s in sigmas[:-1]])}
    m = Measurement((3,), 4, Timeline.build(sigmas), feats, {3: torch.zeros_like(feats[3])}, 10)
    copy = search(m, 2.0, [(3, "blockdance")])
    plan = search_with_forecasts(m, 2.0, [(3, "blockdance")])
    assert copy.predicted_error > 0.1 and plan.predicted_error < 1e-5
    assert "taylor1" in plan.forecasts()
    kinds = [a.kind.value for a in plan.actions()]
    for g in plan.groups:
        if g.anchor is not None:
            assert kinds[g.anchor] == "cache" and g.anchor < g.cache_step
