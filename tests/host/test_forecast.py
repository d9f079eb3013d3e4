"""Forecasting reuse steps inside real ComfyUI: exact where the feature is a polynomial of the
forecast's order in sigma, anchors freed with the run, every family, and no anchor ever crossing
from one sampler run (or one expert) to another."""
import pytest
import torch

from helpers import (PACK_MODULE, assert_finite, description_of, node, recorded_runs, rel_err, sample,
                     sample_recorded, spy_runs)
from test_patch_families import FAMILIES, size


def forecast_patch(pack, model, forecast, mode="blockdance", depth=0.5, N=3, start_percent=0.2, end_percent=1.0):
    return node(pack, "BlockDancePatch").execute(model, mode, depth, N, start_percent, end_percent,
                                                 forecast=forecast).result[0]


def polynomial_block(block, order, seed=0):
    """Make a Wan block output a polynomial of the step's sigma (its input ignored): what reaches the
    deeper blocks is then known exactly at every step, cached or not."""
    terms = {}

    def forward(x, *args, transformer_options=None, **kwargs):
        sigma = float(transformer_options["sigmas"].flatten()[0])
        if not terms:
            g = torch.Generator().manual_seed(seed)
            terms.update({i: torch.randn(x.shape[1:], generator=g).to(x) for i in range(order + 1)})
        return sum(terms[i] * sigma ** i for i in range(order + 1)).expand_as(x).clone()

    block.forward = forward


@pytest.mark.parametrize("order, forecast, exact", [(1, "taylor1", True), (2, "taylor2", True), (2, "taylor1", False)])
def test_a_feature_polynomial_in_sigma_is_forecast_exactly(pack, tiny, order, forecast, exact):
    """Exact at the forecast's order; a quadratic feature is missed by a line (so exactness is the
    forecast's, not the test's)."""
    wan = tiny.build("wan21", seed=0)
    blocks = wan.patcher.get_model_object("diffusion_model").blocks
    cut = len(blocks) // 2
    polynomial_block(blocks[cut - 1], order)
    base = sample(wan.patcher, wan, steps=12)
    out, record = sample_recorded(pack, forecast_patch(pack, wan.patcher, forecast, depth=cut / len(blocks)), wan,
                                  steps=12)
    copy = sample(forecast_patch(pack, wan.patcher, "copy", depth=cut / len(blocks)), wan, steps=12)
    assert record.steps_forecast and len(record.steps_forecast) == len(record.steps_reused)
    if not exact:
        assert rel_err(out, base) > 1e-4
        return
    assert rel_err(out, base) < 1e-5                   # the forecast hands the deeper blocks the true feature
    assert rel_err(copy, base) > 1e-3                  # a copy of the cache step's does not


def test_anchors_are_kept_per_forecast_order_and_freed_when_the_run_ends(pack, tiny):
    wan = tiny.build("wan21", seed=0)
    peaks = {}
    for forecast in ("copy", "taylor1", "taylor2"):
        model = forecast_patch(pack, wan.patcher, forecast)
        runs = spy_runs(model)
        _, record = sample_recorded(pack, model, wan, steps=12)
        (run,) = runs
        assert run.finished and len(run.cache) == 0 and run.cache.nbytes() == 0
        peaks[forecast] = record.cache_peak_bytes
    assert peaks["taylor1"] == 2 * peaks["copy"] and peaks["taylor2"] == 3 * peaks["copy"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_runs_a_forecast_close_to_uncached(pack, tiny, family):
    tm = tiny.build(family, seed=0, **size(family))
    mode = "delta" if family not in ("hidream",) else "blockdance"
    base = sample(tm.patcher, tm, steps=12)
    out, record = sample_recorded(pack, forecast_patch(pack, tm.patcher, "taylor1", mode=mode), tm, steps=12)
    copy = sample(forecast_patch(pack, tm.patcher, "copy", mode=mode), tm, steps=12)
    assert_finite(out)
    assert record.steps_forecast, "no reuse step forecast"
    assert not torch.equal(out, copy)
    # close to uncached: within the copy's own distance, doubled (a forecast from wrong anchors, another
    # run's or another range's, lands far outside)
    assert rel_err(out, base) < max(2 * rel_err(copy, base), 0.02), (rel_err(out, base), rel_err(copy, base))


def _advanced(model, tm, steps, start, last, latent, noise):
    import comfy.sample
    image = comfy.sample.fix_empty_latent_channels(model, latent)
    noise_tensor = comfy.sample.prepare_noise(image, 3) if noise else torch.zeros_like(image)
    return comfy.sample.sample(model, noise_tensor, steps, 2.0, "euler", "simple", tm.positive, tm.negative, image,
                               disable_noise=not noise, start_step=start, last_step=last,
                               force_full_denoise=last == steps, disable_pbar=True, seed=3)


def test_chained_samplers_and_two_experts_never_share_anchors(pack, tiny):
    """Wan 2.2 style: a high-noise expert samples steps 0-8, a low-noise one 8-16 (each patched, both
    forecasting). The second sampler's output is what it gives alone from the same latent: nothing the
    first run kept reaches it, whether the two are one model or two."""
    high, low = tiny.build("wan21", seed=0), tiny.build("wan21", seed=1)
    for second in (high, low):
        first_model = forecast_patch(pack, high.patcher, "taylor2", start_percent=0.0)
        second_model = forecast_patch(pack, second.patcher, "taylor2", start_percent=0.0)
        with recorded_runs(pack) as reports:
            mid = _advanced(first_model, high, 16, 0, 8, high.latent["samples"], noise=True)
            chained = _advanced(second_model, second, 16, 8, 16, mid, noise=False)
        assert reports[0].record.steps_forecast and reports[1].record.steps_forecast
        alone = _advanced(forecast_patch(pack, second.patcher, "taylor2", start_percent=0.0), second, 16, 8, 16,
                          mid, noise=False)
        assert torch.equal(chained, alone)


def test_the_forecasting_peers_skip_every_block_on_the_steps_they_leave_out(pack, tiny):
    """benchmarks/peers.py: Spectrum and TaylorSeer run on the engine, forecasting the last block's
    output (all blocks skipped) on exactly the steps their schedules leave out."""
    from benchmarks import peers
    wan = tiny.build("wan21", seed=0)
    steps = 16
    for computes, forecast in ((peers.spectrum_computes(steps, 0.75), peers.spectrum_forecast(pack, steps)),
                               (peers.taylorseer_computes(steps, 3), peers.taylorseer_forecast(pack))):
        out, record = sample_recorded(pack, peers.patch_peer(pack, wan.patcher, computes, forecast), wan, steps=steps)
        assert_finite(out)
        skipped = {k for k, c in enumerate(computes) if not c}
        assert record.steps_reused == skipped
        assert all(record.steps[k].blocks_skipped == wan.num_blocks * record.steps[k].calls for k in skipped)
        assert record.steps_forecast == {k for k in skipped if sum(computes[:k]) > 1}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_follows_a_forecasting_schedule(pack, tiny, family):
    """A saved schedule whose reuse steps forecast (as Calibrate writes with forecast=taylor1),
    through Patch's schedule input: its reuse steps forecast, finite and close to uncached."""
    import sys
    schedule_mod = sys.modules[f"{PACK_MODULE}.blockdance_core.schedule"]
    families = sys.modules[f"{PACK_MODULE}.nodes.families"]
    tm = tiny.build(family, seed=0, **size(family))
    mode = "delta" if family != "hidream" else "blockdance"
    name = families.detect(tm.patcher.get_model_object("diffusion_model")).name
    cut = max(1, tm.num_blocks // 2)
    kinds = "FFCRCRCRCRFF"
    base, plain = sample_recorded(pack, forecast_patch(pack, tm.patcher, "copy", N=1), tm, steps=12)
    positions = [s.position for s in plain.steps]   # the run's own timeline (shifted models are not k / 12)
    steps = tuple(schedule_mod.ScheduleStep(positions[k], 1 - k / 12, {"F": "full", "C": "cache", "R": "reuse"}[c],
                                            0 if c == "F" else cut, "" if c == "F" else mode,
                                            "taylor1" if c == "R" else "")
                  for k, c in enumerate(kinds))
    schedule = schedule_mod.Schedule("forecasting", name, tm.num_blocks, 0, steps, 1.5, 1.5, 0.0)
    patched = node(pack, "BlockDancePatch").execute(tm.patcher, "blockdance", 0.75, 2, 0.4, 0.95,
                                                    schedule=schedule).result[0]
    out, record = sample_recorded(pack, patched, tm, steps=12)
    assert_finite(out)
    assert record.steps_reused == {3, 5, 7, 9} and record.steps_forecast == {5, 7, 9}   # step 3: one anchor, a copy
    assert rel_err(out, base) < 0.1, rel_err(out, base)
