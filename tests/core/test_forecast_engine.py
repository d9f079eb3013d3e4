"""Forecasting reuse steps in the engine: the range's last block gets the extrapolation of what the
computed steps kept, exact for features of the forecast's order, a copy until enough anchors exist,
and every anchor dropped when the run ends."""
import pytest
import torch

from blockdance_core import BlockDanceConfig, GroupPolicy, PatchSpec, PlannedRun, StepPolicy, Timeline
from blockdance_core.actions import FULL, StepKind, cache_step, reuse_step
from blockdance_core.forecast import COPY, Forecast
from blockdance_core.plans import plan_from_reuse

SIGMAS = [1.0, 0.93, 0.81, 0.7, 0.62, 0.5, 0.41, 0.3, 0.22, 0.1, 0.0]   # uneven, as shifted schedules
BLOCKS = 4
G = torch.Generator().manual_seed(0)
TERMS = [torch.randn(2, 5, 3, generator=G, dtype=torch.float64) for _ in range(3)]


def feature(sigma, order):
    """What the range's last block outputs at `sigma`: a polynomial of that order in sigma."""
    return sum(TERMS[i] * sigma ** i for i in range(order + 1))


class Fixed(StepPolicy):
    name = "fixed"

    def __init__(self, plan, anchors=1):
        self.plan, self._anchors = plan, anchors

    def ranges(self, num_blocks):
        return ((range(BLOCKS), "blockdance"),)

    def start(self, timeline, num_blocks):
        return PlannedRun(list(self.plan))

    def anchors(self, num_blocks):
        return self._anchors


def drive(policy, order, mode="blockdance", f=None):
    """Run the plan over a stack whose last hooked block outputs feature(sigma) (+ its input in
    delta mode, so the blocks' own change is the polynomial); returns the stack's output per step."""
    f = f or feature
    run = PatchSpec(policy, BLOCKS).new_run(Timeline.build(SIGMAS))
    outputs = []
    for k, sigma in enumerate(SIGMAS[:-1]):
        run.begin_evaluation()
        run.begin_call(sigma, ["cond"])
        state = torch.zeros(2, 5, 3, dtype=torch.float64) + k
        start = state.clone()
        for j in range(BLOCKS):
            last = j == BLOCKS - 1
            if mode == "delta":
                compute = (lambda s, sig=sigma: start + f(sig, order)) if last else (lambda s: s)
            else:
                compute = (lambda s, sig=sigma: f(sig, order)) if last else (lambda s: s * 1.5)
            state = run.run_block(j, state, compute)
        run.end_call()
        run.step_done(k)
        outputs.append(state)
    return outputs, run


def plan(forecast, reuse_at=(3, 4, 6, 8), anchors_at=(0, 1, 2, 5, 7)):
    actions = [FULL] * (len(SIGMAS) - 1)
    for k in anchors_at:
        actions[k] = cache_step(range(BLOCKS), "blockdance")
    source = None
    for k, a in enumerate(actions):
        if a.kind is StepKind.CACHE:
            source = k
        if k in reuse_at:
            actions[k] = reuse_step(range(BLOCKS), "blockdance", source, forecast)
    return actions


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("method", ["taylor", "chebyshev"])
def test_a_forecast_of_a_polynomial_feature_of_its_order_is_exact(method, order):
    forecast = Forecast(method, order, ridge=0.0)   # a ridge shrinks the fit: exact only without one
    outputs, run = drive(Fixed(plan(forecast), forecast.anchors), order)
    record = run.finish()
    for k in (3, 4, 6, 8):
        truth = feature(SIGMAS[k], order)
        assert float((outputs[k] - truth).norm() / truth.norm()) < 1e-9, k
        assert record.steps[k].forecast == forecast.label and record.steps[k].reused_calls == 1
    assert record.steps_forecast == {3, 4, 6, 8}
    assert "forecast=4/4" in record.log_line("toy", "blockdance")


def test_a_spectrum_style_fit_over_step_indices_reads_every_anchor_it_keeps():
    """Spectrum: a degree-2 ridge fit over all computed steps, on the step index; with a window of 5 the
    cache keeps five anchors and a quadratic in the step index is recovered to ridge tolerance."""
    forecast = Forecast("chebyshev", 2, window=5, over="step", ridge=1e-6)
    by_step = lambda sigma, order: feature(SIGMAS.index(sigma) / 10.0, order)   # noqa: E731
    outputs, run = drive(Fixed(plan(forecast, reuse_at=(6, 8), anchors_at=(0, 1, 2, 3, 4, 5, 7)), 5), 2, f=by_step)
    assert run.cache.anchors == 5
    record = run.finish()
    for k in (6, 8):
        truth = feature(k / 10.0, 2)
        assert float((outputs[k] - truth).norm() / truth.norm()) < 1e-4, k
    assert record.steps[6].forecast == forecast.label == "chebyshev2-w5-step-r1e-06"
    assert Forecast.parse(forecast.label) == forecast


def test_a_copy_of_the_same_plan_misses_the_moving_feature():
    """The exactness above is the forecast's: copying the cache step's features is off."""
    outputs, run = drive(Fixed(plan(COPY)), 1)
    run.finish()
    assert not torch.allclose(outputs[3], feature(SIGMAS[3], 1), rtol=1e-3)
    assert torch.equal(outputs[3], feature(SIGMAS[2], 1))


def test_delta_forecasts_the_blocks_own_change_on_top_of_the_current_input():
    forecast = Forecast("taylor", 1)
    actions = [a if a.kind is StepKind.FULL else
               (cache_step(a.blocks, "delta") if a.kind is StepKind.CACHE else
                reuse_step(a.blocks, "delta", a.source, forecast)) for a in plan(forecast)]
    outputs, run = drive(Fixed(actions, 2), 1, mode="delta")
    run.finish()
    for k in (3, 4, 6, 8):
        truth = torch.zeros(2, 5, 3, dtype=torch.float64) + k + feature(SIGMAS[k], 1)
        assert torch.allclose(outputs[k], truth, rtol=1e-9, atol=1e-9), k


def test_too_few_anchors_copy_and_the_record_says_so():
    forecast = Forecast("taylor", 2)
    outputs, run = drive(Fixed(plan(forecast, reuse_at=(1, 3), anchors_at=(0, 2)), 3), 1)
    record = run.finish()
    assert torch.equal(outputs[1], feature(SIGMAS[0], 1))            # one anchor: a copy
    assert record.steps[1].forecast == "copy"
    assert torch.allclose(outputs[3], feature(SIGMAS[3], 1), rtol=1e-9)   # two anchors: order 1, exact here
    assert record.steps_forecast == {3}


def test_anchors_are_counted_in_the_cache_and_freed_when_the_run_ends():
    forecast = Forecast("taylor", 2)
    _, copy_run = drive(Fixed(plan(COPY)), 1)
    _, run = drive(Fixed(plan(forecast), forecast.anchors), 1)
    one = TERMS[0].numel() * TERMS[0].element_size()
    assert run.cache.nbytes() == 3 * one and copy_run.cache.nbytes() == one
    record = run.finish()
    assert record.cache_peak_bytes == 3 * one and run.cache.nbytes() == 0 and len(run.cache) == 0
    copy_run.finish()


def test_a_heun_corrector_at_the_same_step_replaces_its_entry_rather_than_adding_an_anchor():
    from blockdance_core.cache import FeatureCache
    cache = FeatureCache(anchors=3)
    for step, value in ((0, 1.0), (1, 2.0), (1, 3.0), (2, 4.0)):
        cache.store("c", torch.tensor([value]), step, range(2), "blockdance", ())
    latest = cache.entry("c")
    anchors = cache.anchors_for("c", latest, 3)
    assert [a.step for a in anchors] == [0, 1, 2] and float(anchors[1].features) == 3.0


def test_anchors_of_another_range_or_layout_are_never_read():
    from blockdance_core.cache import FeatureCache
    cache = FeatureCache(anchors=3)
    cache.store("c", torch.ones(2), 0, range(3), "blockdance", ("a",))
    cache.store("c", torch.ones(2), 1, range(2), "blockdance", ("a",))
    cache.store("c", torch.ones(2), 2, range(2), "delta", ("a",))
    cache.store("c", torch.ones(2), 3, range(2), "delta", ("b",))
    assert [a.step for a in cache.anchors_for("c", cache.entry("c"), 3)] == [3]


def test_group_policy_keeps_anchors_before_its_first_cache_step_and_forecasts():
    config = BlockDanceConfig(N=2, start_percent=0.3, end_percent=1.0, forecast="taylor1")
    timeline = Timeline.build(SIGMAS)
    actions = GroupPolicy(config).start(timeline, 8).plan
    first_cache = next(k for k, a in enumerate(actions) if a.kind is StepKind.CACHE and
                       k + 1 < len(actions) and actions[k + 1].kind is StepKind.REUSE)
    assert actions[first_cache - 1].kind is StepKind.CACHE               # the anchor before it
    assert all(a.forecast == Forecast("taylor", 1) for a in actions if a.kind is StepKind.REUSE)
    assert GroupPolicy(config).anchors(8) == 2
    copy = GroupPolicy(BlockDanceConfig(N=2, start_percent=0.3, end_percent=1.0)).start(timeline, 8).plan
    assert copy[first_cache - 1].kind is StepKind.FULL and GroupPolicy(BlockDanceConfig()).anchors(8) == 1


def test_plan_from_reuse_without_forecast_is_unchanged():
    reuse = [False, False, True, False, True, True, False]
    assert [a.kind.value for a in plan_from_reuse(reuse, range(3), "delta")] == \
        ["full", "cache", "reuse", "cache", "reuse", "reuse", "full"]


def test_bad_forecast_setting_names_the_allowed_values():
    from blockdance_core.config import BlockDanceConfigError
    with pytest.raises(BlockDanceConfigError, match="forecast='spline1'.*allowed: copy, taylor1"):
        BlockDanceConfig(forecast="spline1")
