import dataclasses
import json
import math

import pytest
import torch

from blockdance_core import FULL, PatchSpec, Timeline, cache_step, reuse_step
from blockdance_core.policy import ModelFingerprint
from blockdance_core.schedule import Schedule, SchedulePolicy, ScheduleError, ScheduleStep, place
from blockdance_core.heatmap import render
from blockdance_core.probe import Measurement, ProbePolicy, candidate_cuts
from blockdance_core.search import BudgetUnreachable, predicted_error, search, step_weights

from test_engine import SIGMAS, sample
from toy_dit import ToyDiT


def measure(model, max_values=16384, keys=("cond", "uncond"), sigmas=SIGMAS):
    spec = PatchSpec(ProbePolicy(candidate_cuts(model.num_blocks), max_values), model.num_blocks)
    out, record = sample(model, spec, keys=keys, sigmas=sigmas)
    return record.result.measurement(), out, record


def test_probe_run_computes_everything_and_is_bit_identical():
    model = ToyDiT(0, 6)
    base, _ = sample(model, keys=("cond", "uncond"))
    measurement, out, record = measure(model)
    assert torch.equal(out, base) and record.block_calls_skipped == 0
    assert measurement.cuts == tuple(range(1, 7)) and measurement.width == 8


def test_reuse_error_is_what_the_deeper_blocks_would_receive():
    """E[j, k] against the block outputs of an uncached run recorded independently."""
    model = ToyDiT(0, 6)
    outputs = {}

    def recording(j, state, compute, to_stage):
        out = compute(state)
        outputs.setdefault(j, []).append(out.clone())
        return out

    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    for k in range(len(SIGMAS) - 1):   # the same Euler trajectory as sample(), one chunk
        x = x + (SIGMAS[k + 1] - SIGMAS[k]) * model(x, SIGMAS[k], hook=recording)
    measurement, _, _ = measure(model, keys=("cond",))
    F = torch.stack(outputs[3])                          # cut 4: the output of block 3, [steps, 2, 6, 8]
    expected = ((F[2] - F[7]).abs().flatten(1).sum(1) / F[7].abs().flatten(1).sum(1)).mean().detach()
    assert float(measurement.reuse_error(4, "blockdance")[2, 7]) == pytest.approx(float(expected), rel=1e-5)
    assert math.isinf(measurement.reuse_error(4, "delta")[7, 2])


def test_subsampling_keeps_the_error_estimate():
    model = ToyDiT(0, 6)
    full, _, _ = measure(model)
    sub, _, _ = measure(model, max_values=20)      # 20 of the 48 values of a row
    assert sub.features[3].shape[-1] == 20
    a, b = full.reuse_error(3, "delta"), sub.reuse_error(3, "delta")
    finite = torch.isfinite(a)
    assert torch.allclose(a[finite], b[finite], rtol=0.5)
    rank = lambda t: t[finite].argsort().argsort().float()
    assert torch.corrcoef(torch.stack([rank(a), rank(b)]))[0, 1] > 0.8


def synthetic(steps=6, cuts=(1, 2), seed=0):
    """A Measurement with random features, small enough to enumerate every plan."""
    g = torch.Generator().manual_seed(seed)
    sigmas = [1 - k / steps for k in range(steps + 1)]
    feats = {c: torch.randn(steps, 1, 10, generator=g).cumsum(0) for c in cuts}
    bases = {c: torch.randn(steps, 1, 10, generator=g).cumsum(0) for c in cuts}
    return Measurement(tuple(cuts), max(cuts), Timeline.build(sigmas), feats, bases, 10)


def all_plans(steps, options):
    """Every plan: a sequence of computed steps and groups (cache j, reuse j+1..m, option)."""
    def extend(p):
        if p == steps:
            yield []
            return
        for rest in extend(p + 1):
            yield [FULL] + rest
        for last in range(p + 1, steps):
            for cut, mode in options:
                for rest in extend(last + 1):
                    yield [cache_step(range(cut), mode)] + [reuse_step(range(cut), mode, p)] * (last - p) + rest
    yield from extend(0)


@pytest.mark.parametrize("target", [1.2, 1.5, 2.0])
def test_search_is_exact(target):
    measurement = synthetic()
    options = [(1, "blockdance"), (2, "blockdance"), (2, "delta")]
    plan = search(measurement, target, options)
    total = 6 * 2
    skips = lambda actions: sum(a.skipped for a in actions)
    feasible = [p for p in all_plans(6, options) if total / (total - skips(p)) >= target - 1e-9]
    best = min(predicted_error(measurement, p) for p in feasible)
    assert plan.ideal_speedup >= target - 1e-9
    assert plan.predicted_error == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert predicted_error(measurement, plan.actions()) == pytest.approx(plan.predicted_error)


def test_search_refuses_an_unreachable_target():
    with pytest.raises(BudgetUnreachable, match="no reuse plan reaches 9.00x"):
        search(synthetic(), 9.0, [(1, "blockdance")])


def test_step_weights_follow_the_sigma_steps():
    w = step_weights([1.0, 0.9, 0.5, 0.0])
    assert w.tolist() == pytest.approx([0.3, 1.2, 1.5])
    assert step_weights([1.0, 0.9, 0.5, 0.0], "uniform").tolist() == [1, 1, 1]


def toy_schedule(kinds="FCRRCRF", cut=3, mode="delta", num_blocks=6, name="toy"):
    steps = len(kinds)
    kind = {"F": "full", "C": "cache", "R": "reuse"}
    return Schedule(name, "toy", num_blocks, 8, tuple(
        ScheduleStep(k / steps, 1 - k / steps, kind[c], cut if c != "F" else 0, mode if c != "F" else "")
        for k, c in enumerate(kinds)), 1.5, 1.4, 0.1, {"steps": steps})


def evenly(steps):
    return Timeline.build([1 - k / steps for k in range(steps + 1)])


def kinds(actions):
    return "".join(a.kind.value[0].upper() for a in actions)


def test_schedule_is_placed_on_the_timeline():
    schedule = toy_schedule()
    assert kinds(place(schedule, evenly(7))) == "FCRRCRF"               # as calibrated
    assert kinds(place(schedule, evenly(14))) == "FFFCRRRRFCRRFF"       # twice the steps: the same stretches reuse


def test_schedule_on_a_run_that_starts_half_way():
    """denoise 0.5 / a chained second sampler: the run starts at position 0.5; a reuse stretch it starts
    in cannot reuse at its first step (nothing cached yet)."""
    schedule = toy_schedule("CRRRRRF", cut=2, mode="blockdance")
    half = Timeline(tuple(1 - k / 14 for k in range(7, 15)), tuple(k / 14 for k in range(7, 14)))
    plan = place(schedule, half)
    assert kinds(plan) == "CRRRRFF"
    assert plan[1].source == 0 and plan[1].blocks == range(2)


def test_schedule_json_round_trip_and_bad_files(tmp_path):
    schedule = toy_schedule()
    path = tmp_path / "toy.json"
    schedule.save(str(path))
    assert Schedule.load(str(path)) == schedule
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScheduleError, match=f"{bad}: not valid JSON"):
        Schedule.load(str(bad))
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ScheduleError, match="not a BlockDance schedule"):
        Schedule.load(str(bad))
    data = schedule.to_json()
    data["steps"][2]["kind"] = "skip"
    bad.write_text(json.dumps(data))
    with pytest.raises(ScheduleError, match=r"bad.json: steps\[2\].kind is 'skip'; allowed: 'full', 'cache', 'reuse'"):
        Schedule.load(str(bad))
    del data["model"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ScheduleError, match="bad.json: model is None; it must be a JSON object"):
        Schedule.load(str(bad))


def test_schedule_refuses_another_model():
    schedule = toy_schedule()
    schedule.check_model("toy", 6, 8)
    with pytest.raises(ScheduleError, match="measured on toy, 6 blocks, width 8; this model is flux, 57 blocks"):
        SchedulePolicy(schedule).check_model(ModelFingerprint("flux", 57))
    with pytest.raises(ScheduleError, match="this model is toy, 6 blocks, width 16, latent channels 4"):
        SchedulePolicy(schedule).check_model(ModelFingerprint("toy", 6, 16, 4, 32))
    SchedulePolicy(schedule).check_model(ModelFingerprint("toy", 6, 8, 4, 32))   # the fields it has all fit
    old = Schedule.from_json({**schedule.to_json(), "model": {"family": "toy", "num_blocks": 6}})
    SchedulePolicy(old).check_model(ModelFingerprint("toy", 6, 16))   # a file without a width: unchecked
    with pytest.raises(ScheduleError, match="this model is toy, 6 blocks, width 16"):
        schedule.check_model("toy", 6, 16)


def test_schedule_carries_the_latent_channels_and_conditioning_width():
    """Issue 16 item 4: where calibration knew them, a schedule names the latent's channels and the
    conditioning's width in its "model" object; they round-trip, a file without them still loads (and
    they are not compared), a bad value is refused naming the field, and a model whose latent channels
    or conditioning width differ is refused naming both sides."""
    schedule = dataclasses.replace(toy_schedule(), latent_channels=4, cond_width=32)
    data = json.loads(json.dumps(schedule.to_json()))
    assert data["model"] == {"family": "toy", "num_blocks": 6, "width": 8, "latent_channels": 4, "cond_width": 32}
    assert data["version"] == 1   # an optional model field, not a new format
    again = Schedule.from_json(data)
    assert again == schedule and again.fingerprint == ModelFingerprint("toy", 6, 8, 4, 32)
    assert toy_schedule().to_json()["model"] == {"family": "toy", "num_blocks": 6, "width": 8}   # unknown: not written
    old = Schedule.from_json({**data, "model": {"family": "toy", "num_blocks": 6, "width": 8}})
    assert (old.latent_channels, old.cond_width) == (None, None)
    SchedulePolicy(old).check_model(ModelFingerprint("toy", 6, 8, 16, 4096))   # not known: not compared
    for key, value in (("latent_channels", 0), ("latent_channels", "4"), ("latent_channels", True),
                       ("cond_width", 10**9), ("cond_width", 1.5)):
        with pytest.raises(ScheduleError, match=rf"bad.json: model.{key} is .*; it must be an integer in \[1, "):
            Schedule.from_json({**data, "model": {**data["model"], key: value}}, "bad.json")
    with pytest.raises(ScheduleError, match="measured on toy, 6 blocks, width 8, latent channels 4, conditioning "
                                            "width 32; this model is toy, 6 blocks, width 8, latent channels 16"):
        SchedulePolicy(schedule).check_model(ModelFingerprint("toy", 6, 8, 16, 32))
    with pytest.raises(ScheduleError, match="conditioning width 32; this model is .*conditioning width 4096"):
        SchedulePolicy(schedule).check_model(ModelFingerprint("toy", 6, 8, 4, 4096))
    SchedulePolicy(schedule).check_model(ModelFingerprint("toy", 6, 8, 4, None))   # what the model does not say


def test_schedule_drives_the_engine():
    model = ToyDiT(0, 6)
    schedule = toy_schedule("CRRCRRCRRCRR", cut=6, mode="delta")
    _, record = sample(model, PatchSpec(SchedulePolicy(schedule), 6))
    assert record.steps_reused == {1, 2, 4, 5, 7, 8, 10, 11}
    assert record.block_calls_skipped == 8 * 6


def test_an_all_full_schedule_is_bit_identical():
    model = ToyDiT(0, 6)
    base, _ = sample(model)
    out, record = sample(model, PatchSpec(SchedulePolicy(toy_schedule("F" * 12)), 6))
    assert torch.equal(out, base) and not record.steps_reused


def test_heatmap_is_an_image_that_shows_the_measurement_and_the_schedule():
    a, b = synthetic(seed=0), synthetic(seed=1)
    plan = search(a, 1.5, [(1, "blockdance"), (2, "delta")])
    img = render(a.step_change(), a.cuts, plan.actions(), cell=4)
    assert img.shape[0] == 1 and img.shape[2] == 6 * 4 and 0 <= float(img.min()) and float(img.max()) <= 1
    assert not torch.equal(img, render(b.step_change(), b.cuts, plan.actions(), cell=4))
    assert not torch.equal(img, render(a.step_change(), a.cuts, None, cell=4))


def test_heatmap_is_readable_at_preview_size_with_axes_legend_and_title():
    """Preview Image shows it at its own size: wide enough, with text (axes, legend, the title) drawn."""
    from blockdance_core import heatmap
    a = synthetic(seed=0)
    plan = search(a, 1.5, [(1, "blockdance"), (2, "delta")])
    title = "schedule: 1.50x, 31.2 dB; 4 steps (same cost) 27.9 dB"
    img = render(a.step_change(), a.cuts, plan.actions(), title=title, num_blocks=2)[0]
    assert img.shape[1] >= 512 and img.shape[0] >= 200
    plain = render(a.step_change(), a.cuts, plan.actions(), num_blocks=2)[0]
    assert img.shape[0] > plain.shape[0]   # the title takes its own rows
    # every character the renderer is given has a glyph, and text draws ink
    assert all(heatmap.text_mask(c).any() for c in "AZaz09.:()x%-=>/" )
    canvas = torch.zeros(20, 200, 3)
    heatmap.draw_text(canvas, "STEP 12", 0, 0)
    assert canvas.amax() > 0.9
    wide = torch.rand(24, 50)
    assert render(wide, list(range(1, 25)), None)[0].shape[1] >= 512


def test_heatmap_draws_forecasting_reuse_steps_in_their_own_colour():
    from dataclasses import replace as with_field
    from blockdance_core import heatmap
    from blockdance_core.forecast import Forecast
    a = synthetic(seed=0)
    actions = search(a, 1.5, [(2, "blockdance")]).actions()
    forecast = [with_field(x, forecast=Forecast("taylor", 1)) if x.kind.value == "reuse" else x for x in actions]
    copy_img = render(a.step_change(), a.cuts, actions, cell=8)[0]
    fc_img = render(a.step_change(), a.cuts, forecast, cell=8)[0]
    colour = torch.tensor(heatmap.OTHER_ACTION)
    assert not (copy_img == colour).all(-1).any() and (fc_img == colour).all(-1).any()
    legend = render(a.step_change(), a.cuts, forecast, num_blocks=2)[0]
    assert (legend == colour).all(-1).any()
