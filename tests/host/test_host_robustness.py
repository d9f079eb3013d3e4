"""What ComfyUI and other nodes can do to BlockDance, each case once broken (issue #7, rows R1-R9):
another patch on a hooked block, ControlNet residuals with delta, VACE memory after a run, Heun,
repeated sigmas, SkipLayerGuidance in the skipped range, the window on the timeline (denoise < 1,
chained samplers), SD3's last block with delta, and two runs of clones of one patched model."""
import weakref

import pytest
import torch

from helpers import (BlockCounter, assert_finite, patch, record_of, recorded_runs, rel_err, sample,
                     sample_recorded, spy_runs)

FLUX_BLOCKS = ["double_blocks", "single_blocks"]   # tiny Flux: 2 double + 3 single; depth 0.75 hooks 0..3


@pytest.fixture(scope="module")
def flux(tiny):
    return tiny.build("flux", seed=0)


def counted(pack, model, tm, containers, **kwargs):
    """Sample; return the output, the run's record and real executions per block."""
    counter = BlockCounter(model.get_model_object("diffusion_model"), containers)
    try:
        out, record = sample_recorded(pack, model, tm, **kwargs)
    finally:
        counter.close()
    return out, record, counter.counts


def with_slg(model, double="", single="", start=0.0, end=1.0, scale=3.0):
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT
    return SkipLayerGuidanceDiT.execute(model, scale=scale, start_percent=start, end_percent=end,
                                        double_layers=double, single_layers=single).result[0]


# ----------------------------------------------------------------------------------------- R1, R7, C12
# 8 steps, cfg 2, N=2 over the whole run; one batched main forward per step and one SkipLayerGuidance
# forward (cond only) per step. Hooked blocks 0..3, block 4 runs always. SLG's own forward must run
# in full when it replaces a hooked block (R1, R7), and then the main forward of the same step must
# too, or SLG's term (cond - slg) x scale carries the reuse error x scale (C12): with SLG over the
# whole run, every step computes in full and the output is the unpatched model's with SLG, bit for bit.
@pytest.mark.parametrize("double, single, expected", [
    ("0", "", [8, 16, 16, 16, 16]),    # R1: SLG on block 0: SLG's forwards skip block 0, nothing else
    ("0", "1", [8, 16, 16, 8, 16]),    # R1: block 0 and the cache block
    ("1", "", [16, 8, 16, 16, 16]),    # R7: a layer inside the skipped range: SLG still skips it
])
def test_skip_layer_guidance_on_hooked_blocks_computes_its_steps_in_full(pack, flux, double, single, expected):
    model = with_slg(patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0), double, single)
    out, record, counts = counted(pack, model, flux, FLUX_BLOCKS, steps=8)
    assert counts == expected
    assert not record.steps_reused and record.displaced_calls == 8 and record.ideal_speedup == 1.0
    assert torch.equal(out, sample(with_slg(flux.patcher, double, single), flux, steps=8))
    assert any("SkipLayerGuidance" in note for note in record.notes)
    assert any("computed in full so its term carries no reuse error" in note for note in record.notes)


def test_skip_layer_guidance_starting_mid_run_redoes_its_first_step_and_keeps_blockdance_error(pack, tiny):
    """C12 on the tiny SD3: SLG on a layer inside the skipped range, from the middle of the run. Before
    its window BlockDance reuses; SLG's first step is evaluated again in full (its reuse would put the
    reuse error x scale into SLG's term), later SLG steps compute in full from the start. BlockDance+SLG
    then differs from plain+SLG by no more than BlockDance's own error, and the record counts the
    discarded evaluation as run, not as saved."""
    sd3 = tiny.build("sd3", seed=0)
    blocks = ["joint_blocks"]
    kwargs = dict(depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    plain = sample(sd3.patcher, sd3, steps=10)
    own_error = rel_err(sample(patch(pack, sd3.patcher, **kwargs), sd3, steps=10), plain)
    slg_plain = sample(with_slg(sd3.patcher, "1", start=0.45), sd3, steps=10)
    model = with_slg(patch(pack, sd3.patcher, **kwargs), "1", start=0.45)
    out, record, _ = counted(pack, model, sd3, blocks, steps=10)
    error = rel_err(out, slg_plain)
    print(f"C12: BlockDance+SLG vs SLG {error:.4%}; BlockDance's own error {own_error:.4%}")
    assert 0 < own_error and error <= 1.5 * own_error, (error, own_error)
    redone = [s.step for s in record.steps if s.blocks_redone]
    assert len(redone) == 1 and record.steps_reused and max(record.steps_reused) < redone[0]
    assert all(s.planned != "reuse" and not s.reused_calls for s in record.steps[redone[0]:])
    discarded_forwards = 2   # the batched cond/uncond forward and SLG's of the evaluation done again
    assert record.block_calls_total == (record.model_calls - discarded_forwards) * record.num_blocks
    assert sum(s.blocks_redone for s in record.steps) == 1 + 4   # its main forward ran block 3 only, SLG's all 4
    assert any("computed in full so its term carries no reuse error" in note for note in record.notes)


def test_skip_layer_guidance_outside_the_hooked_blocks_keeps_reusing(pack, flux):
    model = with_slg(patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0), "", "2")
    _, record, counts = counted(pack, model, flux, FLUX_BLOCKS, steps=8)
    assert counts == [8, 8, 8, 8, 8] and record.displaced_calls == 0   # SLG forwards reuse too; block 4 is SLG's


def test_a_patch_placed_after_blockdance_on_block_0_disables_it_cleanly(pack, flux):
    """R1: a node after BlockDance Patch re-patches block 0 for every forward: no reuse at all, the
    output is exactly the unpatched one, and the run says what happened."""
    model = patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0).clone()
    model.set_model_patch_replace(lambda args, extra: extra["original_block"](args), "dit", "double_block", 0)
    out, record, counts = counted(pack, model, flux, FLUX_BLOCKS, steps=8)
    assert torch.equal(out, sample(flux.patcher, flux, steps=8))
    assert counts == [8] * 5 and not record.steps_reused and record.displaced_calls == 8
    assert any("placed after BlockDance Patch" in note for note in record.notes)


# ----------------------------------------------------------------------------------------------- R2
def residual_control(tokens, width, inputs, outputs, scale=0.3):
    """A ControlNet as a DiT forward sees it: fixed residuals (one hint, as a real ControlNet's) added
    in place after blocks ('input' after Flux double blocks, 'output' after Flux single / SD3 joint
    blocks; Flux.forward_orig and MMDiT.forward_core_with_concat, core v0.8.0)."""
    from comfy.controlnet import ControlBase

    class Control(ControlBase):
        def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
            g = torch.Generator().manual_seed(123)
            fresh = lambda: scale * torch.randn(x_noisy.shape[0], tokens, width, generator=g)
            return {"input": [fresh() for _ in range(inputs)], "middle": [], "output": [fresh() for _ in range(outputs)]}

    return Control()


def with_control(tm, control):
    add = lambda conds: [[c, {**extra, "control": control, "control_apply_to_uncond": True}] for c, extra in conds]
    return type(tm)(**{**tm.__dict__, "positive": add(tm.positive), "negative": add(tm.negative)})


def test_delta_with_a_controlnet_stays_as_close_as_without(pack, flux):
    """R2: delta used to add the cached F_i - F_0, which holds the residuals the ControlNet added
    between the skipped blocks at the cache step, to an input that gets this step's residuals again
    (error 0.0002 -> 0.077 here). It now keeps the blocks' own change."""
    controlled = with_control(flux, residual_control(16, 128, inputs=2, outputs=3))
    settings = dict(depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    err = {}
    for name, tm in (("plain", flux), ("controlnet", controlled)):
        uncached = sample(flux.patcher, tm, steps=10)
        for mode in ("blockdance", "delta"):
            out, record = sample_recorded(pack, patch(pack, flux.patcher, mode=mode, **settings), tm, steps=10)
            assert record.steps_reused == {1, 3, 5, 7, 9}
            err[name, mode] = rel_err(out, uncached)
    assert err["controlnet", "delta"] < 3 * err["plain", "delta"]
    assert err["controlnet", "delta"] < err["controlnet", "blockdance"] / 3


def test_delta_cache_holds_the_skipped_blocks_own_change(pack, tiny):
    """R2, measured on the real blocks: with residuals added after every SD3 joint block, what a delta
    cache step keeps is the sum of each skipped block's output minus its input."""
    sd3 = tiny.build("sd3", seed=0)
    controlled = with_control(sd3, residual_control(16, 256, inputs=0, outputs=4))
    model = patch(pack, sd3.patcher, mode="delta", depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    runs = spy_runs(model)
    blocks = model.get_model_object("diffusion_model").joint_blocks
    changes, inputs = [], {}
    hooks = []
    for b in range(3):   # depth 0.75 of 4 blocks: blocks 0..2 are skipped on reuse steps
        hooks.append(blocks[b].register_forward_pre_hook(
            lambda m, args, kwargs, b=b: inputs.__setitem__(b, (args[0].clone(), args[1].clone())), with_kwargs=True))
        hooks.append(blocks[b].register_forward_hook(
            lambda m, args, out, b=b: changes.append((b, out[1] - inputs[b][1], out[0] - inputs[b][0]))))
    checked = []

    def check(step, *rest):
        run = runs[-1]
        if run.record.steps[step].done == "cache":
            (key,) = run.cache.keys()
            mine = changes[-3:]
            assert [b for b, _, _ in mine] == [0, 1, 2]
            stored = run.cache.entry(key).features
            assert torch.allclose(stored["img"], sum(c for _, c, _ in mine), atol=1e-5)
            assert torch.allclose(stored["txt"], sum(c for _, _, c in mine), atol=1e-5)
            checked.append(step)

    try:
        sample(model, controlled, steps=6, cfg=1.0, callback=check)
    finally:
        for h in hooks:
            h.remove()
    assert checked == [0, 2, 4]


# ----------------------------------------------------------------------------------------------- R3
@pytest.mark.parametrize("interrupt_at", [None, 5])
def test_vace_keeps_nothing_alive_after_the_run(pack, tiny, interrupt_at):
    """R3: the last step reuses (end_percent = 1.0), or the run is interrupted: no cached tensor (VACE
    side results included) may outlive the run."""
    vace = tiny.build("wan_vace", seed=0)
    model = patch(pack, vace.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    runs = spy_runs(model)
    held, side = [], []

    def watch(step, *rest):
        cache = runs[-1].cache
        for key in cache.keys():
            entry = cache.entry(key)
            held.extend(weakref.ref(t) for t in entry.features.values())
            side.extend(weakref.ref(t) for value in entry.side.values() for t in value if t is not None)
        if step == interrupt_at:
            raise KeyboardInterrupt("cancel")

    if interrupt_at is None:
        sample(model, vace, steps=10, callback=watch)
    else:
        with pytest.raises(KeyboardInterrupt):
            sample(model, vace, steps=10, callback=watch)
    assert held and side   # features and VACE side results were cached during the run
    assert all(ref() is None for ref in held + side), "a cached tensor outlived its run"
    dm = vace.patcher.get_model_object("diffusion_model")
    assert not any(type(b).__name__ == "VaceProxy" for b in dm.vace_blocks)


# ----------------------------------------------------------------------------------------------- R5
def test_heun_cache_steps_keep_their_own_forward(pack, flux):
    """R5: Heun's corrector for step k-1 runs at step k's sigma before step k's own forward; what a
    cache step keeps must come from its own forward (the last one before its step callback)."""
    model = patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    runs = spy_runs(model)
    cache_block = model.get_model_object("diffusion_model").single_blocks[1]   # block 3, the range's end
    outputs = []
    hook = cache_block.register_forward_hook(lambda m, a, out: outputs.append(out.clone()))
    checked = []

    def check(step, *rest):
        run = runs[-1]
        if run.record.steps[step].done == "cache":
            (key,) = run.cache.keys()
            assert torch.equal(run.cache.entry(key).features["img"], outputs[-1]), f"step {step}"
            checked.append(step)

    try:
        out = sample(model, flux, steps=8, cfg=1.0, sampler="heun", callback=check)
    finally:
        hook.remove()
    assert_finite(out)
    assert checked == [0, 2, 4, 6]
    assert [s.calls for s in runs[-1].record.steps] == [1] + [2] * 7   # corrector of k-1 + k's own


# ----------------------------------------------------------------------------------------------- R6
def test_repeated_sigmas_are_successive_steps(pack, flux):
    import comfy.sample
    import comfy.samplers
    model = patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    sigmas = torch.tensor([1.0, 0.9, 0.7, 0.7, 0.4, 0.2, 0.0])
    latent = flux.latent["samples"]
    noise = comfy.sample.prepare_noise(latent, 1)
    with recorded_runs(pack) as reports:
        out = comfy.sample.sample_custom(model, noise, 2.0, comfy.samplers.sampler_object("euler"), sigmas,
                                         flux.positive, flux.negative, latent, seed=1)
    assert_finite(out)
    record = record_of(reports, model)
    assert [s.calls for s in record.steps] == [1] * 6
    assert record.steps_reused == {1, 3, 5}
    assert "reused=3/6" in reports[-1].line


# ----------------------------------------------------------------------------------------------- R8
def _ksampler(model, tm, steps, denoise=1.0, start_step=None, last_step=None, noise=True, latent=None):
    import comfy.sample
    latent = tm.latent["samples"] if latent is None else latent
    noise_tensor = comfy.sample.prepare_noise(latent, 3) if noise else torch.zeros_like(latent)
    return comfy.sample.sample(model, noise_tensor, steps, 2.0, "euler", "simple", tm.positive, tm.negative, latent,
                               denoise=denoise, disable_noise=not noise, start_step=start_step, last_step=last_step,
                               force_full_denoise=last_step is None, disable_pbar=True, seed=3)


def reused_positions(record):
    return sorted(round(record.steps[k].position, 4) for k in record.steps_reused)


def test_window_is_a_stretch_of_the_timeline_with_denoise(pack, flux):
    """R8: start/end_percent are points of the sampling timeline, as ComfyUI's own: with denoise 0.5
    the run starts half way, and the window [0.4, 0.95) covers its steps up to 0.95."""
    model = patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.4, end_percent=0.95)
    with recorded_runs(pack) as reports:
        _ksampler(model, flux, steps=10, denoise=0.5)
    record = record_of(reports, model)
    assert [round(s.position, 4) for s in record.steps] == [round(0.5 + 0.05 * k, 4) for k in range(10)]
    assert reused_positions(record) == [0.55, 0.65, 0.75, 0.85]


def test_window_holds_across_two_chained_advanced_samplers(pack, flux):
    """R8: Wan 2.2 style: steps 0-10 in one KSamplerAdvanced, 10-20 in another; together they reuse
    at the same points of the timeline as one 20-step run."""
    model = patch(pack, flux.patcher, depth=0.75, N=2, start_percent=0.4, end_percent=0.95)
    with recorded_runs(pack) as reports:
        _ksampler(model, flux, steps=20)
        single = reports[-1].record
        first = _ksampler(model, flux, steps=20, start_step=0, last_step=10)
        _ksampler(model, flux, steps=20, start_step=10, last_step=20, noise=False, latent=first)
    chained = reused_positions(reports[-2].record) + reused_positions(reports[-1].record)
    assert chained == reused_positions(single) == [0.45, 0.55, 0.65, 0.75, 0.85]


# ----------------------------------------------------------------------------------------------- R9
def test_sd3_delta_on_the_last_joint_block(pack, tiny):
    """R9: SD3's last joint block returns txt=None; delta with the cache point there must not add to
    None."""
    sd3 = tiny.build("sd3", seed=0)
    out, record = sample_recorded(pack, patch(pack, sd3.patcher, mode="delta", depth=1.0, N=2, start_percent=0.0),
                                  sd3)
    assert_finite(out)
    assert record.steps_reused and rel_err(out, sample(sd3.patcher, sd3)) < 0.5


# ------------------------------------------------------------------------------------ run isolation
def test_interleaved_runs_of_clones_keep_their_own_records(pack, flux):
    """Two clones of one patched model take turns a sampler step at a time, as the lockstep benchmark
    runs them (one advances inside the other's step callback); each must behave as if alone."""
    from benchmarks.lockstep import run_lockstep, sampler_runner
    patched = patch(pack, flux.patcher, mode="delta", depth=0.75, N=3, start_percent=0.0, end_percent=1.0)
    a, b = patched.clone(), patched.clone()
    alone = {name: sample_recorded(pack, m, flux, steps=steps) for name, m, steps in (("a", a, 9), ("b", b, 6))}
    runners = [sampler_runner(m, lambda cb, m=m, s=s: sample(m, flux, steps=s, callback=cb))
               for m, s in ((a, 9), (b, 6))]
    with recorded_runs(pack) as reports:
        outputs = [t.output for t in run_lockstep(runners, 1)]
    by_steps = {r.record.num_steps: r.record for r in reports}
    assert torch.equal(outputs[0], alone["a"][0]) and torch.equal(outputs[1], alone["b"][0])
    assert by_steps[9].to_dict() == alone["a"][1].to_dict()
    assert by_steps[6].to_dict() == alone["b"][1].to_dict()


@pytest.mark.parametrize("policy_kind", ["probe", "ada"])
def test_interleaved_clones_with_a_probe_or_ada_policy_each_get_their_own_result(pack, flux, policy_kind):
    """Issue 16: two clones of one model patched with a policy that leaves a result (a probe's
    measurement, Ada's plan), sampled at once (one advances inside the other's step callback): each
    clone's run hands its own result back through its own report, the same result as when alone."""
    import sys
    from benchmarks.lockstep import run_lockstep, sampler_runner
    core = sys.modules[f"{pack.__name__}.blockdance_core"]
    telemetry = sys.modules[f"{pack.__name__}.nodes.telemetry"]
    apply_blockdance = sys.modules[f"{pack.__name__}.nodes.patcher"].apply_blockdance
    if policy_kind == "probe":
        policy = core.probe.ProbePolicy((1, 3, 5))
    else:
        ada = core.ada
        meta = ada.AdaMeta("flux", 5, int(flux.latent["samples"].shape[1]), int(flux.positive[0][0].shape[-1]),
                           0.0, 4, "blockdance", 2.0, (2.0,))
        torch.manual_seed(0)
        net = ada.AdaNet(meta.latent_channels, meta.cond_width, meta.hidden)
        torch.nn.init.normal_(net.correction[-1].weight)   # an instance-dependent plan
        policy = ada.AdaPolicy(net.eval(), meta, 2.0)
    patched = apply_blockdance(flux.patcher, policy, policy_kind)
    clones = [telemetry.receiving(patched) for _ in range(2)]
    steps = (9, 6)

    def result_of(record):
        r = record.result
        if policy_kind == "probe":
            m = r.measurement()
            return m.num_steps, {c: m.features[c].clone() for c in m.cuts}
        return len(r.computes), tuple(r.computes)

    alone = []
    for (clone, receiver), s in zip(clones, steps):
        sample(clone, flux, steps=s)
        alone.append(result_of(receiver.last.record))
        receiver.reports.clear()
    runners = [sampler_runner(clone, lambda cb, m=clone, s=s: sample(m, flux, steps=s, callback=cb))
               for (clone, _), s in zip(clones, steps)]
    run_lockstep(runners, 1)
    for (clone, receiver), s, expected in zip(clones, steps, alone):
        (report,) = receiver.reports   # its own run's report only
        assert report.record.num_steps == s
        got = result_of(report.record)
        assert got[0] == expected[0] == (s if policy_kind == "probe" else s - 1)
        if policy_kind == "probe":
            assert got[1].keys() == expected[1].keys()
            assert all(torch.equal(got[1][c], expected[1][c]) for c in got[1])
        else:
            assert got[1] == expected[1]


# ------------------------------------------------------------------------------------ torch.compile
def test_torch_compile_never_traces_the_pack(pack, tiny):
    """Under TorchCompileModel, dynamo must not trace the run's bookkeeping (it changes every step, so
    guards on it recompiled until the limit): every function of the engine and the hooks stays
    without compiled code, and the compiled model gives exactly the eager patched output."""
    import inspect
    import sys

    import torch._dynamo
    from comfy_api.torch_helpers.torch_compile import set_torch_compile_wrapper
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from benchmarks.comfy_env import PACK_MODULE
    tm = tiny.build("wan21", seed=0, config_overrides={"num_layers": 8})
    patched = patch(pack, tm.patcher, depth=0.75, N=2, start_percent=0.0, end_percent=1.0)
    eager = sample(patched, tm, steps=6)
    compiled = patched.clone()
    set_torch_compile_wrapper(compiled, backend="eager")
    torch._dynamo.reset()
    try:
        out, record = sample_recorded(pack, compiled, tm, steps=6)
        modules = [sys.modules[f"{PACK_MODULE}.{name}"] for name in
                   ("blockdance_core.engine", "blockdance_core.policy", "nodes.hooks", "nodes.swap", "nodes.vace")]
        functions = [getattr(f, "_torchdynamo_orig_callable", f) for m in modules
                     for _, cls in inspect.getmembers(m, inspect.isclass) if cls.__module__ == m.__name__
                     for f in vars(cls).values() if callable(f)]
        traced = [f.__qualname__ for f in functions
                  if hasattr(f, "__code__") and _debug_get_cache_entry_list(f.__code__)]
    finally:
        torch._dynamo.reset()
    assert torch.equal(out, eager) and record.steps_reused == {1, 3, 5}
    assert len(functions) > 20 and traced == []
