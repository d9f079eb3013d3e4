"""The closed-loop policy on a calibrated prior inside real ComfyUI, saved as a checkpoint, read by
BlockDance Ada Loader and connected to BlockDance Patch beside the schedule: a zero correction
reproduces the static schedule bit for bit; any correction spends exactly the schedule's budget."""
import pytest
import torch

from helpers import node, sample_recorded


@pytest.fixture(scope="module")
def wan(tiny):
    return tiny.build("wan21", seed=0, config_overrides={"num_layers": 6}, batch_size=2)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    import folder_paths
    path = tmp_path / "models" / "blockdance"
    path.mkdir(parents=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "blockdance", ([str(path)], set()))
    return path


def loaded(pack, folder, correction, margin=1.0, name="closed_loop"):
    """A correction saved as a checkpoint and read back by BlockDance Ada Loader: what Patch's policy
    socket gets in a real graph."""
    pack.blockdance_core.ada_prior_train.save(str(folder / f"{name}.safetensors"), correction, margin, {})
    return node(pack, "BlockDanceAdaLoader").execute(f"{name}.safetensors").result[0]


def random_correction(prior, seed):
    correction = prior.Correction()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in correction.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 3)
    return correction


@pytest.fixture(scope="module")
def schedule(pack, wan):
    """A one-range schedule searched on a probe run of the tiny model, as Calibrate searches."""
    core, calibration = pack.blockdance_core, pack.nodes.calibration
    sampling = calibration.Sampling(wan.positive, wan.negative, wan.latent, 3, 10, 2.0, "euler", "simple")
    probed, receiver = pack.nodes.telemetry.receiving(
        pack.nodes.patcher.apply_blockdance(wan.patcher, core.probe.ProbePolicy((6,)), "probe"))
    sampling.run(probed)
    measurement = receiver.last.record.result.measurement()
    plan = core.search.search(measurement, 2.0, [(6, "delta")])
    return core.schedule.Schedule.from_plan("tiny", "wan", measurement.width, measurement.timeline, plan)


def patched(pack, model, schedule=None, policy=None):
    return node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95, schedule=schedule,
                                                 policy=policy).result[0]


@pytest.fixture(scope="module")
def static(pack, wan, schedule):
    return sample_recorded(pack, patched(pack, wan.patcher, schedule=schedule), wan, steps=10)


def test_zero_correction_is_the_static_schedule_bit_for_bit(pack, wan, schedule, static, folder):
    prior = pack.blockdance_core.ada_prior
    static, static_record = static
    assert static_record.steps_reused
    policy = loaded(pack, folder, prior.Correction())
    out, record = sample_recorded(pack, patched(pack, wan.patcher, schedule=schedule, policy=policy), wan, steps=10)
    assert torch.equal(out, static)
    assert record.steps_reused == static_record.steps_reused and record.fallback_calls == 0


def test_any_correction_spends_exactly_the_budget(pack, wan, schedule, static, folder):
    prior = pack.blockdance_core.ada_prior
    flips = 0
    for seed in range(4):
        policy = loaded(pack, folder, random_correction(prior, seed), name=f"random{seed}")
        model = patched(pack, wan.patcher, schedule=schedule, policy=policy)
        out, record = sample_recorded(pack, model, wan, steps=10)
        assert torch.isfinite(out).all()
        assert len(record.steps_reused) == len(static[1].steps_reused)
        assert record.block_calls_skipped == static[1].block_calls_skipped   # the executed fraction is the schedule's
        assert record.ideal_speedup == static[1].ideal_speedup >= 2.0
        assert record.fallback_calls == 0
        flips += record.extra["flips"]
    assert flips > 0


def test_a_correction_switched_off_by_validation_is_the_schedule(pack, wan, schedule, static, folder):
    """margin = inf (validation found no gain): the checkpoint loads and the run is the schedule itself."""
    prior = pack.blockdance_core.ada_prior
    policy = loaded(pack, folder, random_correction(prior, 0), margin=float("inf"))
    out, record = sample_recorded(pack, patched(pack, wan.patcher, schedule=schedule, policy=policy), wan, steps=10)
    assert torch.equal(out, static[0]) and record.extra["flips"] == 0


def test_a_closed_loop_policy_without_a_schedule_says_what_to_connect(pack, wan, folder):
    policy = loaded(pack, folder, pack.blockdance_core.ada_prior.Correction())
    with pytest.raises(ValueError, match="connect one to BlockDance Patch's schedule input"):
        patched(pack, wan.patcher, policy=policy)


def test_an_amortised_schedule_for_an_unseen_setting_drives_patch_at_its_budget(pack, wan, folder):
    """A library probed on two settings gives a third (another step count, scheduler and sampler) a
    schedule with no run of its own; through Patch it reuses exactly the steps it planned, and it also
    serves as the closed-loop policy's prior, bit for bit."""
    core, calibration = pack.blockdance_core, pack.nodes.calibration
    timeline_for = pack.nodes.amortised.timeline_for
    entries = []
    for steps, sampler, scheduler in ((8, "euler", "simple"), (14, "dpmpp_2m", "normal")):
        sampling = calibration.Sampling(wan.positive, wan.negative, wan.latent, 3, steps, 2.0, sampler, scheduler)
        _, m = calibration.measure(wan.patcher, sampling, (6,))
        entries.append(core.amortised.entry_from(f"{sampler} {steps}", sampler, scheduler, 2.0, m, 6, "delta"))
    library = core.amortised.Library("wan", 6, m.width, 6, "delta", entries)
    timeline = timeline_for(wan.patcher, 11, "euler", "karras")
    schedule = library.schedule(timeline, 2.0, "euler", 2.0)
    assert schedule.predicted_speedup >= 2.0
    out, record = sample_recorded(pack, patched(pack, wan.patcher, schedule=schedule), wan, steps=11,
                                  scheduler="karras")
    assert record.steps_reused == set(schedule.reuse_steps) and record.fallback_calls == 0
    assert torch.isfinite(out).all()
    policy = loaded(pack, folder, core.ada_prior.Correction())
    again, _ = sample_recorded(pack, patched(pack, wan.patcher, schedule=schedule, policy=policy), wan, steps=11,
                               scheduler="karras")
    assert torch.equal(again, out)
