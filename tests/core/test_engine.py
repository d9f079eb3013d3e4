import pytest
import torch

from blockdance_core import (BlockDanceConfig, GroupPolicy, MaskPolicy, PatchSpec, PlannedRun, StepPolicy,
                             Timeline, cache_step, reuse_step)

from blockdance_core.engine import Role
from toy_dit import ToyDiT

SIGMAS = [1.0 - k / 12 for k in range(12)] + [0.0]


def spec_for(model, policy=None, **cfg):
    policy = policy or GroupPolicy(BlockDanceConfig(**cfg))
    stages = tuple([0] * model.num_double + [1] * len(model.single_blocks))
    return PatchSpec(policy, model.num_blocks, block_stages=stages)


def hooks_of(run):
    """Like the host: only the hooked blocks reach the engine."""
    def hook(j, state, compute, to_stage):
        return run.run_block(j, state, compute, to_stage) if j in run.spec.hooked_blocks else compute(state)
    return hook


def forward(run, model, x, sigma, keys, hook=None):
    run.begin_call(sigma, keys, x=x)
    try:
        return model(x, sigma, hook=hook or hooks_of(run))
    finally:
        run.end_call()


def sample(model, spec=None, keys=("cond",), x=None, sigmas=SIGMAS, split=False, hook=None, heun=False):
    """Euler (or Heun) over the toy; `split` sends each conditioning chunk as its own call; `hook`
    defaults to run.run_block. Returns the output and the run's record."""
    x = torch.randn(2 * len(keys), 6, 8, generator=torch.Generator().manual_seed(0)) if x is None else x
    run = spec.new_run(Timeline.build(sigmas)) if spec else None

    def denoise(x, sigma):
        if run is not None:
            run.begin_evaluation()
        calls = [(list(keys), x)] if not split else [([key], c) for key, c in zip(keys, x.chunk(len(keys)))]
        return torch.cat([model(xc, sigma) if run is None else forward(run, model, xc, sigma, ck, hook)
                          for ck, xc in calls])

    for k in range(len(sigmas) - 1):
        d = denoise(x, sigmas[k])
        if run is not None:
            run.step_done(k)
        dt = sigmas[k + 1] - sigmas[k]
        if heun and sigmas[k + 1] > 0:
            d2 = denoise(x + dt * d, sigmas[k + 1])
            x = x + dt * (d + d2) / 2
        else:
            x = x + dt * d
    return x, (run.finish() if run is not None else None)


def make(num_double=0, num_single=8, **cfg):
    model = ToyDiT(num_double, num_single)
    return model, spec_for(model, **cfg)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_n1_is_bit_identical(mode):
    model, spec = make(N=1, mode=mode, start_percent=0.0, end_percent=1.0)
    base, _ = sample(model)
    out, record = sample(model, spec)
    assert torch.equal(base, out)
    assert record.block_calls_skipped == 0 and len(record.steps_reused) == 0


def test_skipped_blocks_really_do_not_run():
    model, spec = make(N=3, depth=0.75, start_percent=0.0, end_percent=1.0)
    before = model.block_calls()
    _, record = sample(model, spec)
    ran = model.block_calls() - before
    reuse_steps = sum(1 for k in range(12) if k % 3 != 0)  # groups of 3 over the whole run
    assert len(record.steps_reused) == reuse_steps == 8
    assert record.block_calls_skipped == reuse_steps * 6      # 0.75 of 8 blocks
    assert ran == record.block_calls_run == 12 * 8 - reuse_steps * 6
    assert record.ideal_speedup == pytest.approx(96 / (96 - 48))
    assert [s.done for s in record.steps] == ["cache", "reuse", "reuse"] * 4
    assert record.to_dict()["steps"][1]["blocks_skipped"] == 6


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_modes_differ_but_stay_close(mode):
    model, _ = make()
    base, _ = sample(model)
    out, record = sample(model, spec_for(model, mode=mode))
    other, _ = sample(model, spec_for(model, mode="delta" if mode == "blockdance" else "blockdance"))
    assert record.steps_reused and {s.mode for s in record.steps if s.blocks} == {mode}
    assert not torch.equal(out, base) and not torch.equal(out, other)
    assert torch.isfinite(out).all()
    assert (out - base).norm() / base.norm() < 0.1


def test_cached_tensor_survives_in_place_blocks():
    """The stored F_i must equal the block output at store time although later blocks add into it."""
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0, depth=0.5)
    run = spec.new_run(Timeline.build(SIGMAS))
    seen = {}

    def spy(j, state, compute, to_stage):
        out = run.run_block(j, state, compute, to_stage)
        if j == spec.hooked_blocks[-1]:
            seen["out"] = out.clone()
        return out

    forward(run, model, torch.randn(2, 6, 8), SIGMAS[0], ["c"], hook=spy)
    assert run.record.steps[0].done == "cache"
    assert torch.equal(run.cache.entry("c").features, seen["out"])
    run.finish()
    assert len(run.cache) == 0


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_chunks_batched_or_split_use_their_own_cache(mode):
    model, _ = make()
    keys = ("cond", "uncond")
    batched, s1 = sample(model, spec_for(model, mode=mode), keys=keys)
    split, s2 = sample(model, spec_for(model, mode=mode), keys=keys, split=True)
    assert torch.allclose(batched, split, atol=1e-5)
    assert len(s1.steps_reused) == len(s2.steps_reused) > 0
    # Swapping the chunk order in the batch must not swap the caches.
    x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(0))
    swapped, _ = sample(model, spec_for(model, mode=mode), keys=("uncond", "cond"), x=torch.cat(x.chunk(2)[::-1]))
    assert torch.allclose(torch.cat(swapped.chunk(2)[::-1]), batched, atol=1e-5)


def test_layout_change_falls_back_to_full_compute():
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    run = spec.new_run(Timeline.build(SIGMAS))
    forward(run, model, torch.randn(1, 6, 8), SIGMAS[0], ["c"])
    before = model.block_calls()
    forward(run, model, torch.randn(1, 10, 8), SIGMAS[1], ["c"])  # other resolution
    assert model.block_calls() - before == 8
    assert run.record.fallback_calls == 1 and not run.record.steps_reused


def test_runs_are_independent_and_free_the_cache():
    model, spec = make(mode="delta")
    a, ra = sample(model, spec)
    assert ra.cache_peak_bytes > 0
    # an interrupted run is simply dropped; the next run has a run object of its own
    run = spec.new_run(Timeline.build(SIGMAS))
    forward(run, model, torch.randn(2, 6, 8), SIGMAS[5], ["cond"])
    b, rb = sample(model, spec)
    assert torch.equal(a, b) and ra.steps_reused == rb.steps_reused
    assert ra.to_dict() == rb.to_dict()


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
@pytest.mark.parametrize("depth", [0.25, 0.75, 1.0])  # cache point in double stage, single stage, last block
def test_two_stage_stack(mode, depth):
    model, _ = make(num_double=2, num_single=2)
    base, _ = sample(model)
    spec = spec_for(model, mode=mode, depth=depth)
    out, record = sample(model, spec)
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert (out - base).norm() / base.norm() < 0.2
    assert record.block_calls_skipped == len(record.steps_reused) * len(spec.hooked_blocks)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_plain_fast_path_counts_and_confirms_full_steps(mode):
    """Hooks that ask the run's role first (as the ComfyUI hooks do) compute plain blocks directly and
    pass skipped ones through; the blocks the record counts must be the blocks that really ran."""
    model, spec = make(N=3, mode=mode, depth=0.5, start_percent=0.25, end_percent=0.9)
    reference, _ = sample(model, spec)
    runs = []

    def hook(index, state, compute, to_stage=None):
        run = runs[-1]
        role = run.role(index)
        if role is Role.RUN:
            return compute(state)
        if role is Role.PASS:
            return state
        return run.run_block(index, state, compute, to_stage)

    class Tracking(PatchSpec):
        def new_run(self, timeline):
            runs.append(super().new_run(timeline))
            return runs[-1]

    before = model.block_calls()
    out, record = sample(model, Tracking(spec.policy, spec.num_blocks), hook=hook)
    assert torch.equal(out, reference)
    assert record.block_calls_run == model.block_calls() - before  # counted == executed
    assert record.block_calls_total == 12 * model.num_blocks


# --------------------------------------------------------------------------- what the host can do to us
def test_stale_entry_from_an_older_group_is_not_reused():
    """R4: a chunk absent at its group's cache step (a timestep-ranged cond) must not reuse what it
    cached in an earlier group."""
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    run = spec.new_run(Timeline.build(SIGMAS))
    x = torch.randn(2, 6, 8)
    forward(run, model, x, SIGMAS[0], ["a", "b"])        # group 1: cache a and b
    forward(run, model, x, SIGMAS[1], ["a", "b"])        # reuse
    forward(run, model, x[:1], SIGMAS[2], ["a"])         # group 2 caches a only
    before = model.block_calls()
    forward(run, model, x, SIGMAS[3], ["a", "b"])        # b's entry is from step 0: not usable
    assert model.block_calls() - before == 8
    assert run.record.steps[3].fallback_calls == 1 and run.record.steps[3].reused_calls == 0


def test_heun_cache_step_keeps_its_own_forward_not_the_correctors():
    """R5: Heun's corrector for step k runs at step k+1's sigma before step k+1's own forward; the
    features step k+1 keeps must come from its own forward."""
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    run = spec.new_run(Timeline.build(SIGMAS))
    x0, x_corr, x_own = (torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3))
    # Heun's calls: step 0, (callback 0), corrector of 0 at sigma 1, step 1, (callback 1), corrector of 1 at sigma 2
    for x, sigma, done in ((x0, SIGMAS[0], 0), (x0, SIGMAS[1], None), (x0, SIGMAS[1], 1), (x_corr, SIGMAS[2], None)):
        run.begin_evaluation()
        forward(run, model, x, sigma, ["c"])
        if done is not None:
            run.step_done(done)
    run.begin_evaluation()
    own = {}

    def spy(j, state, compute, to_stage):
        out = run.run_block(j, state, compute, to_stage)
        own[j] = out.clone()
        return out

    forward(run, model, x_own, SIGMAS[2], ["c"], hook=spy)
    assert run.record.steps[2].done == "cache" and run.record.steps[2].calls == 2
    assert torch.equal(run.cache.entry("c").features, own[spec.hooked_blocks[-1]])


def test_guidance_extra_forward_does_not_replace_the_main_forwards_cache():
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    run = spec.new_run(Timeline.build(SIGMAS))
    x = torch.randn(1, 6, 8)
    run.begin_evaluation()
    forward(run, model, x, SIGMAS[0], ["c"])
    kept = run.cache.entry("c").features.clone()
    forward(run, model, x * 3, SIGMAS[0], ["c"])   # e.g. SLG's extra forward in the same evaluation
    assert torch.equal(run.cache.entry("c").features, kept)


def test_repeated_sigmas_map_to_successive_steps():
    """R6: a schedule that repeats a sigma must not send the second step back to the first."""
    sigmas = [1.0, 0.8, 0.5, 0.5, 0.2, 0.0]
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    _, record = sample(model, spec, sigmas=sigmas)
    assert [s.calls for s in record.steps] == [1] * 5
    assert record.steps_reused == {1, 3}


def test_heun_counts_each_step_once_and_reuses_on_plan():
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    _, record = sample(model, spec, heun=True)
    assert [s.calls for s in record.steps] == [1] + [2] * 11   # the corrector for step k runs at step k+1
    assert record.steps_reused == {1, 3, 5, 7, 9, 11}


def test_a_forward_whose_first_block_is_not_ours_runs_in_full_and_is_counted():
    """R1: another patch holds block 0, so block 0 never reaches the engine: the later hooked blocks
    must not skip anything, and the record says the forward was displaced."""
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0, depth=0.5)
    run = spec.new_run(Timeline.build(SIGMAS))
    x = torch.randn(1, 6, 8)
    forward(run, model, x, SIGMAS[0], ["c"])

    def foreign_block0(j, state, compute, to_stage):
        return compute(state) if j == 0 else run.run_block(j, state, compute, to_stage)

    before = model.block_calls()
    out = forward(run, model, x.clone(), SIGMAS[1], ["c"], hook=foreign_block0)
    assert model.block_calls() - before == 8
    assert torch.equal(out, model(x.clone(), SIGMAS[1]))
    step = run.record.steps[1]
    assert step.displaced_calls == 1 and step.blocks_skipped == 0 and step.blocks_run == 8
    assert any("another node" in n for n in run.record.notes)


def test_host_reported_displacement_runs_in_full():
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0)
    run = spec.new_run(Timeline.build(SIGMAS))
    x = torch.randn(1, 6, 8)
    forward(run, model, x, SIGMAS[0], ["c"])
    run.begin_call(SIGMAS[1], ["c"], displaced_by="SkipLayerGuidance holds block 3")
    out = model(x.clone(), SIGMAS[1], hook=hooks_of(run))
    run.end_call()
    assert torch.equal(out, model(x.clone(), SIGMAS[1]))
    assert run.record.steps[1].displaced_calls == 1
    assert run.record.notes == ["SkipLayerGuidance holds block 3; such forwards ran in full"]


def test_delta_keeps_the_blocks_own_change_when_residuals_land_between_them():
    """R2: ControlNet adds residuals into the hidden state after blocks, in place. Delta must keep only
    what the skipped blocks changed (summed block by block), not those residuals: a reuse step's
    current residuals reach the cut through the pass-through and would be counted twice."""
    model, spec = make(N=2, start_percent=0.0, end_percent=1.0, mode="delta", depth=0.5)   # blocks 0..3
    residuals = [0.5 * torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(9 + j)) for j in range(8)]
    run = spec.new_run(Timeline.build(SIGMAS))
    x = torch.randn(1, 6, 8)
    run.begin_call(SIGMAS[0], ["c"], residuals="a ControlNet is attached")
    model(x, SIGMAS[0], hook=hooks_of(run), residuals=residuals)
    run.end_call()
    h, expected = x.clone(), 0
    for j in range(4):   # the same blocks by hand: each one's own change
        before = h.clone()
        h = model.single_blocks[j](h, SIGMAS[0])
        expected = expected + (h - before)
        h += residuals[j]
    assert torch.allclose(run.cache.entry("c").features, expected, atol=1e-5)
    # the reuse step adds that change to what reaches the cut: this step's input plus its residuals
    seen = {}

    def spy(j, state, compute, to_stage):
        if j == 3:
            seen["in"] = state.clone()
        out = hooks_of(run)(j, state, compute, to_stage)
        if j == 3:
            seen["out"] = out.clone()
        return out

    x1 = torch.randn(1, 6, 8)
    run.begin_call(SIGMAS[1], ["c"], residuals="a ControlNet is attached")
    model(x1, SIGMAS[1], hook=spy, residuals=residuals)
    run.end_call()
    assert run.record.steps[1].reused_calls == 1
    assert torch.allclose(seen["in"], x1 + sum(residuals[:3]), atol=1e-6)
    assert torch.allclose(seen["out"], seen["in"] + expected, atol=1e-6)


@pytest.mark.parametrize("num_double", [0, 2])   # with 2 double blocks the range crosses into the single stage
def test_delta_without_residuals_is_output_minus_input(num_double):
    model, spec = make(num_double, 4, N=2, start_percent=0.0, end_percent=1.0, mode="delta", depth=0.75)
    summed, plain = (spec.new_run(Timeline.build(SIGMAS)) for _ in range(2))
    x = torch.randn(1, 6, 8)
    for run, residuals in ((summed, "flagged, none added"), (plain, None)):
        run.begin_call(SIGMAS[0], ["c"], residuals=residuals)
        model(x.clone(), SIGMAS[0], hook=hooks_of(run))
        run.end_call()
    assert torch.allclose(summed.cache.entry("c").features, plain.cache.entry("c").features, atol=1e-5)


class _RangePolicy(StepPolicy):
    """Skips a middle range of blocks (Delta-DiT style), to keep the engine open to block ranges."""
    name = "range"

    def __init__(self, blocks, mode):
        self.range, self.mode = blocks, mode

    def ranges(self, num_blocks):
        return ((self.range, self.mode),)

    def start(self, timeline, num_blocks):
        plan = [cache_step(self.range, self.mode) if k % 2 == 0 else reuse_step(self.range, self.mode, k - 1)
                for k in range(timeline.num_steps)]
        return PlannedRun(plan)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_a_middle_block_range_can_be_reused(mode):
    model = ToyDiT(0, 8)
    base, _ = sample(model)
    spec = spec_for(model, policy=_RangePolicy(range(2, 6), mode))
    counts = []
    for b in model.single_blocks:
        counts.append(b.calls)
    out, record = sample(model, spec)
    ran = [b.calls - c for b, c in zip(model.single_blocks, counts)]
    assert ran == [12, 12, 6, 6, 6, 6, 12, 12]   # blocks 2..5 skipped on the 6 reuse steps
    assert record.block_calls_skipped == 6 * 4
    assert (out - base).norm() / base.norm() < 0.1 and not torch.equal(out, base)


def test_a_policy_asking_for_unhooked_blocks_is_a_bug_report():
    class Greedy(_RangePolicy):
        def ranges(self, num_blocks):
            return ((range(0, 2), self.mode),)

    model = ToyDiT(0, 8)
    spec = spec_for(model, policy=Greedy(range(0, 5), "blockdance"))
    with pytest.raises(RuntimeError, match="outside the hooked blocks 0..1"):
        sample(model, spec)


def test_mask_policy_follows_its_mask_on_the_timeline():
    model = ToyDiT(0, 8)
    spec = spec_for(model, policy=MaskPolicy((False, True, True, False) * 3, depth=0.5))
    _, record = sample(model, spec)
    assert record.steps_reused == {1, 2, 5, 6, 9, 10}
    assert [s.planned for s in record.steps[:4]] == ["cache", "reuse", "reuse", "full"]
