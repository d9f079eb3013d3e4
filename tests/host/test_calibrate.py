"""BlockDance Calibrate, saved schedules and BlockDance Patch's schedule input inside real ComfyUI."""
import os

import pytest
import torch

from helpers import BlockCounter, LogCapture, node, sample, sample_recorded


@pytest.fixture(scope="module")
def wan(tiny):
    return tiny.build("wan21", seed=0, config_overrides={"num_layers": 8})


def calibrate(pack, tm, target=1.5, mode="auto", steps=10, **kwargs):
    return node(pack, "BlockDanceCalibrate").execute(
        tm.patcher, tm.positive, tm.negative, tm.latent, seed=3, steps=steps, cfg=2.0, sampler_name="euler",
        scheduler="simple", mode=mode, target_speedup=target, **kwargs).result


def with_schedule(pack, model, schedule):
    return node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95, schedule=schedule).result[0]


@pytest.mark.parametrize("mode", ["auto", "blockdance"])
def test_calibrate_then_patch_follows_the_schedule(pack, wan, mode):
    schedule, heatmap, report = calibrate(pack, wan, target=1.5, mode=mode)
    assert (schedule.family, schedule.num_blocks, schedule.width) == ("wan", 8, 128)
    fits = pack.nodes.patcher.model_fingerprint(wan.patcher)   # what patching compares, written at calibration
    assert (schedule.latent_channels, schedule.cond_width) == (fits.latent_channels, fits.cond_width) == (16, 4096)
    assert schedule.fingerprint == fits
    assert schedule.predicted_speedup >= 1.5 and schedule.reuse_steps
    assert mode == "auto" or schedule.modes == ("blockdance",)
    assert heatmap.shape[0] == 1 and heatmap.shape[-1] == 3 and heatmap.shape[2] >= 640 and heatmap.shape[1] >= 300
    assert 0.0 <= float(heatmap.min()) and float(heatmap.max()) <= 1.0
    assert "steps instead of 10" in report and "=>" in report
    patched = with_schedule(pack, wan.patcher, schedule)
    counter = BlockCounter(patched.get_model_object("diffusion_model"), ["blocks"])
    log = LogCapture()
    try:
        out, record = sample_recorded(pack, patched, wan, steps=10, cfg=2.0, seed=3)
    finally:
        counter.close()
        log.close()
    assert torch.isfinite(out).all()
    assert sorted(record.steps_reused) == schedule.reuse_steps   # same steps and scheduler: the calibrated plan
    expected_skipped = sum(s.cut for s in schedule.steps if s.kind == "reuse")
    assert record.block_calls_skipped == expected_skipped == 10 * 8 - sum(counter.counts)
    assert 10 * 8 / (10 * 8 - expected_skipped) == pytest.approx(schedule.predicted_speedup, abs=1e-3)
    (run,) = log.runs()
    assert run["schedule"] == schedule.name == "calibrated-1.5x"


def test_heatmap_changes_with_the_model(pack, tiny, wan):
    other = tiny.build("wan21", seed=1, config_overrides={"num_layers": 8})
    _, a, _ = calibrate(pack, wan)
    _, b, _ = calibrate(pack, other)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_a_schedule_for_another_model_is_refused(pack, tiny, wan):
    schedule, _, _ = calibrate(pack, wan)
    sd3 = tiny.build("sd3", seed=0)
    errors = __import__("sys").modules[f"{pack.__name__}.blockdance_core.schedule"]
    with pytest.raises(errors.ScheduleError, match="measured on wan, 8 blocks, width 128, latent channels 16, "
                                                  "conditioning width 4096; this model is sd3, 4 blocks"):
        with_schedule(pack, sd3.patcher, schedule)


def test_saved_schedule_loads_by_name_and_bad_files_name_themselves(pack, wan, tmp_path, monkeypatch):
    import folder_paths
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "blockdance", ([str(tmp_path)], set()))
    schedule, _, report = calibrate(pack, wan, target=2.0, filename_prefix="tests/wan8")
    path = tmp_path / "tests" / "wan8_00001.json"
    assert path.is_file() and f"saved {path}" in report
    loader = node(pack, "BlockDanceScheduleLoader")
    options = loader.GET_SCHEMA().inputs[0].options
    assert os.path.join("tests", "wan8_00001.json") in options
    (loaded,) = loader.execute(os.path.join("tests", "wan8_00001.json")).result
    assert loaded == schedule and loaded.name == "wan8"
    (tmp_path / "broken.json").write_text('{"format": "blockdance-schedule", "version": 1, "steps": []}')
    errors = __import__("sys").modules[f"{pack.__name__}.blockdance_core.schedule"]
    with pytest.raises(errors.ScheduleError, match=f"{tmp_path / 'broken.json'}: model is None; it must be a JSON object"):
        loader.execute("broken.json")
    with pytest.raises(FileNotFoundError, match="'missing.json' is not in the blockdance model folder"):
        loader.execute("missing.json")


def test_an_all_full_schedule_is_bit_identical(pack, wan):
    """A target the search meets without reusing anything gives the uncached output exactly."""
    schedule, _, _ = calibrate(pack, wan, target=1.05, steps=4)
    calibrated = __import__("sys").modules[f"{pack.__name__}.blockdance_core.schedule"]
    full = calibrated.Schedule(schedule.name, schedule.family, schedule.num_blocks, schedule.width,
                               tuple(calibrated.ScheduleStep(s.position, s.sigma, "full") for s in schedule.steps),
                               1.0, 1.0, 0.0)
    assert torch.equal(sample(with_schedule(pack, wan.patcher, full), wan, steps=10),
                       sample(wan.patcher, wan, steps=10))


def test_calibrate_may_choose_rear_ranges_and_patch_skips_exactly_them(pack, wan):
    """ranges = "front and rear": the search is offered Delta-DiT's rear ranges (within the last
    stage, delta); whatever it picks, the patched run skips exactly the blocks the schedule names."""
    calibration = pack.nodes.calibration
    _, options = calibration.search_options(wan.patcher, "auto", "front and rear")
    rear = [o for o in options if len(o) == 3]
    assert rear and all(o[0] == 8 and o[1] == "delta" and 0 < o[2] < 8 for o in rear)
    assert all(len(o) == 2 for o in calibration.search_options(wan.patcher, "blockdance", "front and rear")[1])
    schedule, _, report = calibrate(pack, wan, target=2.0, ranges="front and rear")
    assert schedule.predicted_speedup >= 2.0 and schedule.calibration["ranges"] == "front and rear"
    patched = with_schedule(pack, wan.patcher, schedule)
    counter = BlockCounter(patched.get_model_object("diffusion_model"), ["blocks"])
    try:
        out, record = sample_recorded(pack, patched, wan, steps=10, cfg=2.0, seed=3)
    finally:
        counter.close()
    assert torch.isfinite(out).all() and sorted(record.steps_reused) == schedule.reuse_steps
    runs = [10] * 8
    for s in schedule.steps:
        if s.kind == "reuse":
            for b in range(s.start, s.cut):
                runs[b] -= 1
    assert counter.counts == runs


def test_a_bad_ranges_choice_is_a_validation_error(pack):
    assert "allowed: front, front and rear" in node(pack, "BlockDanceCalibrate").validate_inputs(ranges="rear")
