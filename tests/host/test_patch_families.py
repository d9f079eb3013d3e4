"""BlockDance Patch inside real ComfyUI, for every family the tiny-model factory can build."""
import sys

import pytest
import torch

from helpers import (PACK_MODULE, BlockCounter, LogCapture, assert_finite, description_of, patch, recorded_runs,
                     rel_err, sample, sample_recorded, spy_runs)

FAMILIES = ["flux", "sd3", "wan21", "wan_vace", "pixart_alpha", "pixart_sigma", "hunyuan_video", "ltxv",
            "qwen_image", "auraflow", "mochi", "chroma", "flux2", "hunyuan_image21", "hidream", "lumina2",
            "z_image", "cosmos"]
DELTA_DEPTH = {"hidream": 0.4}  # delta mode needs HiDream's cache point among its double blocks


def bd_patch(pack, tm, mode="blockdance", **kwargs):
    if mode == "delta" and tm.family in DELTA_DEPTH:
        kwargs["depth"] = DELTA_DEPTH[tm.family]
    return patch(pack, tm.patcher, mode=mode, **kwargs)


def size(family, hires=False):
    """Smallest latent each family accepts (PixArt's position embedding needs >= 264 px)."""
    from benchmarks.tiny_models import MIN_SIZE
    side = MIN_SIZE.get(family, 64)
    return {"width": side + 32 * hires, "height": side + 32 * hires}


@pytest.fixture(params=FAMILIES)
def tm(request, tiny):
    return tiny.build(request.param, seed=0, **size(request.param))


def family_of(model):
    return sys.modules[f"{PACK_MODULE}.nodes.families"].detect(model.get_model_object("diffusion_model"))


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_n1_is_bit_identical_to_unpatched(pack, tm, mode):
    base = sample(tm.patcher, tm, steps=6)
    out = sample(bd_patch(pack, tm, mode=mode, N=1, start_percent=0.0, end_percent=1.0), tm, steps=6)
    assert torch.equal(base, out)
    empty_window = bd_patch(pack, tm, mode=mode, N=3, start_percent=0.97, end_percent=1.0)
    assert torch.equal(base, sample(empty_window, tm, steps=6))


def test_skipped_blocks_do_not_run_and_log_matches(pack, tm):
    steps, N = 10, 2
    patched = patch(pack, tm.patcher, N=N, depth=0.5, start_percent=0.4, end_percent=0.95)
    family = family_of(patched)
    dm = patched.get_model_object("diffusion_model")
    counter = BlockCounter(dm, [s.container for s in family.stages])
    log = LogCapture()
    try:
        _, record = sample_recorded(pack, patched, tm, steps=steps, cfg=2.0)
    finally:
        counter.close()
        log.close()
    reuse_steps = [k for k in range(4, 10) if (k - 4) % N]          # window steps 4..9, groups of 2
    skipped = len(description_of(patched).spec.hooked_blocks)
    assert counter.counts == [steps - len(reuse_steps)] * skipped + [steps] * (tm.num_blocks - skipped)
    (run,) = log.runs()
    assert run["reused"] == f"{len(reuse_steps)}/{steps}"
    assert run["blocks_skipped"] == f"{len(reuse_steps) * skipped}/{steps * tm.num_blocks}"
    assert run["ideal"] == f"{steps * tm.num_blocks / (steps * tm.num_blocks - len(reuse_steps) * skipped):.2f}x"
    assert record.cache_peak_bytes > 0 and run["mode"] == "blockdance"
    assert [s.done for s in record.steps] == ["full"] * 4 + ["cache", "reuse"] * 3


def test_modes_differ_and_stay_close(pack, tm):
    """Both modes reuse, differ from each other and from the uncached output, and stay close to it
    (on the tiny models both are within 3.1% of the uncached output's norm; a cache handing back the
    wrong features lands far outside 10%)."""
    base = sample(tm.patcher, tm)
    outputs = {}
    for mode in ("blockdance", "delta"):
        out, record = sample_recorded(pack, bd_patch(pack, tm, mode=mode), tm)
        assert record.steps_reused and record.block_calls_skipped > 0, mode
        assert_finite(out)
        assert not torch.equal(out, base)
        assert rel_err(out, base) < 0.1, (mode, rel_err(out, base))
        outputs[mode] = out
    assert not torch.equal(outputs["blockdance"], outputs["delta"])


def test_cond_uncond_batched_or_split_never_mix(pack, tm, monkeypatch):
    import comfy.model_management
    patched = bd_patch(pack, tm, mode="delta", N=3, start_percent=0.2)
    batched, record = sample_recorded(pack, patched, tm)
    assert record.model_calls == 10  # one batched forward per step
    real = comfy.model_management.get_free_memory

    def no_room_to_batch(dev=None, torch_free_too=False):  # what calc_cond_batch sees when memory is short
        return real(dev, torch_free_too) if torch_free_too else 0

    monkeypatch.setattr(comfy.model_management, "get_free_memory", no_room_to_batch)
    log = LogCapture()
    try:
        split, record = sample_recorded(pack, patched, tm)
    finally:
        log.close()
    (run,) = log.runs()
    assert record.model_calls == 20  # cond and uncond as separate forwards
    assert int(run["reused"].split("/")[0]) > 0
    assert rel_err(split, batched) < 1e-4


def test_batch_of_two_with_cfg(pack, tiny, tm):
    tm2 = tiny.build(tm.family, seed=0, batch_size=2, **size(tm.family))
    out = sample(patch(pack, tm2.patcher), tm2)
    assert out.shape[0] == 2
    assert_finite(out)
    base = sample(tm2.patcher, tm2)
    assert not torch.equal(out[0], out[1]) and rel_err(out, base) < 1.0


def test_heun_counts_steps_by_sigma(pack, tm):
    patched = patch(pack, tm.patcher, N=2, start_percent=0.0, end_percent=1.0)
    log = LogCapture()
    try:
        out = sample(patched, tm, steps=8, sampler="heun")
    finally:
        log.close()
    assert_finite(out)
    (run,) = log.runs()
    assert run["reused"] == "4/8"  # steps 1, 3, 5, 7 although Heun calls the model 15 times


def test_runs_are_repeatable_and_start_clean(pack, tiny, tm):
    patched = patch(pack, tm.patcher, N=3, start_percent=0.2)
    first = sample(patched, tm)
    # A second KSampler at another resolution (hires-fix style) on the same patched model.
    big = tiny.build(tm.family, seed=0, **size(tm.family, hires=True))
    hires, record = sample_recorded(pack, patched, tm, latent=big.latent)
    assert_finite(hires)
    assert record.fallback_calls == 0
    assert torch.equal(first, sample(patched, tm))


def test_interrupted_run_leaves_nothing_behind(pack, tm):
    patched = patch(pack, tm.patcher, N=2, start_percent=0.0, end_percent=1.0)
    clean = sample(patched, tm)

    def interrupt(step, *args):
        if step == 4:
            raise KeyboardInterrupt("user pressed cancel")

    with recorded_runs(pack) as reports, pytest.raises(KeyboardInterrupt):
        sample(patched, tm, callback=interrupt)
    (report,) = reports   # the interrupted run was reported and its cache freed
    assert report.record.steps[4].calls == 1 and report.record.steps[5].calls == 0
    assert RUN_KEY not in patched.model_options["transformer_options"]
    assert torch.equal(clean, sample(patched, tm))


def test_cached_features_are_not_modified_after_storing(pack, tm):
    """ComfyUI blocks and ControlNet adds modify hidden states in place; the stored copy must not move."""
    patched = patch(pack, tm.patcher, N=3, start_percent=0.0, end_percent=1.0)
    runs = spy_runs(patched)
    snapshots = []

    def check(step, *args):
        cache = runs[-1].cache
        for key in cache.keys():
            entry = cache.entry(key)
            leaves = [t.clone() for t in _leaves(entry.features)]
            for old_key, old_step, old_leaves in snapshots:
                if old_key == key and old_step == entry.step:
                    assert all(torch.equal(a, b) for a, b in zip(old_leaves, leaves))
            snapshots.append((key, entry.step, leaves))

    sample(patched, tm, callback=check)
    assert len({(k, s) for k, s, _ in snapshots}) < len(snapshots)  # entries were seen across steps


RUN_KEY = "blockdance_run"


def _leaves(tree):
    tree_mod = sys.modules[f"{PACK_MODULE}.blockdance_core.tree"]
    return tree_mod.tree_leaves(tree)


def test_node_leaves_the_input_model_untouched(pack, tm):
    before = repr(sorted(tm.patcher.model_options.get("transformer_options", {}).keys()))
    patched = patch(pack, tm.patcher)
    assert patched is not tm.patcher
    assert repr(sorted(tm.patcher.model_options.get("transformer_options", {}).keys())) == before
    assert "blockdance" not in tm.patcher.model_options.get("transformer_options", {})
    assert not tm.patcher.wrappers.get("apply_model", {}).get("blockdance")


@pytest.mark.parametrize("family", ["sd3", "wan21", "hunyuan_video", "ltxv"])
def test_checkpoint_loaded_by_stock_unet_loader(pack, tiny, tmp_path, family):
    """The same patch on a file that ComfyUI's own UNETLoader detected and loaded."""
    tm = tiny.build(family, seed=0)
    loaded = tiny.load_via_unet_loader(tiny.save_checkpoint(family, str(tmp_path / f"tiny_{family}.safetensors")))
    assert type(loaded.get_model_object("diffusion_model")).__name__ == tm.diffusion_model_class
    assert torch.equal(sample(loaded, tm), sample(tm.patcher, tm))
    patched = patch(pack, loaded, N=2, start_percent=0.0)
    out, record = sample_recorded(pack, patched, tm)
    assert_finite(out)
    assert len(record.steps_reused) > 0


def test_the_fingerprint_read_when_patching_is_what_a_run_sees(pack, tm):
    """Issue 16 item 4: each family adapter reads the blocks' width, the latent's channels and the
    conditioning's width from the model when patching (what schedules and policies are checked
    against), and they are what a run's forwards carry."""
    core = sys.modules[f"{PACK_MODULE}.blockdance_core"]
    telemetry = sys.modules[f"{PACK_MODULE}.nodes.telemetry"]
    patcher = sys.modules[f"{PACK_MODULE}.nodes.patcher"]
    seen = {}

    class SeeingRun(core.probe.ProbeRun):
        def decide(self, observation):
            seen.setdefault("latent_channels", int(observation.x.shape[1]))
            seen.setdefault("cond_width", int(observation.context.shape[-1]))
            return super().decide(observation)

    class Seeing(core.probe.ProbePolicy):
        def start(self, timeline, num_blocks):
            return SeeingRun(self.cuts, timeline, num_blocks, self.max_values)

    family = family_of(tm.patcher)
    fingerprint = family.fingerprint(tm.patcher.get_model_object("diffusion_model"), patcher._latent_channels(tm.patcher))
    probed, receiver = telemetry.receiving(patcher.apply_blockdance(tm.patcher, Seeing((1,)), "probe"))
    sample(probed, tm, steps=2)
    width = receiver.last.record.result.width
    assert fingerprint == core.policy.ModelFingerprint(family.name, tm.num_blocks, width, seen["latent_channels"],
                                                       seen["cond_width"])


def test_a_swap_stage_whose_blocks_take_other_arguments_is_refused_when_patching(pack, tiny):
    """Container-swap stages read the hidden state from the block's call (HiDream: image_tokens and
    text_tokens by name); a core whose blocks take other arguments is refused at patch time."""
    hidream = tiny.build("hidream", seed=0)
    block = hidream.patcher.get_model_object("diffusion_model").double_stream_blocks[0]
    patch(pack, hidream.patcher)   # the blocks as core v0.8.0 / 0.33.0 define them fit

    def forward(hidden_states, encoder_hidden_states=None):
        return hidden_states, encoder_hidden_states

    block.forward = forward
    try:
        errors = sys.modules[f"{PACK_MODULE}.blockdance_core"]
        with pytest.raises(errors.BlockDanceConfigError, match=r"hidream double_stream_blocks\[0\] .* calls it with "
                                                               r"image_tokens, text_tokens"):
            patch(pack, hidream.patcher)
    finally:
        del block.forward
