import pytest
import torch

from blockdance_core import BlockDanceConfig, BlockDanceEngine, StepAction

from toy_dit import ToyDiT

SIGMAS = [1.0 - k / 12 for k in range(12)] + [0.0]


def sample(model, engine=None, keys=("cond",), x=None, sigmas=SIGMAS, split=False, hook=None):
    """Euler over the toy; `split` sends each conditioning chunk as its own call; `hook` defaults
    to engine.run_block."""
    x = torch.randn(2 * len(keys), 6, 8, generator=torch.Generator().manual_seed(0)) if x is None else x
    if engine:
        engine.start_run()
    for k in range(len(sigmas) - 1):
        t = sigmas[k]
        calls = [(list(keys), x)] if not split else [([key], c) for key, c in zip(keys, x.chunk(len(keys)))]
        outs = []
        for call_keys, xc in calls:
            if engine is None:
                outs.append(model(xc, t))
                continue
            engine.begin_call(sigmas, t, call_keys)
            try:
                outs.append(model(xc, t, hook=hook or engine.run_block))
            finally:
                engine.end_call()
        x = x + (sigmas[k + 1] - t) * torch.cat(outs)
    stats = engine.finish_run() if engine else None
    return x, stats


def make(num_double=0, num_single=8, **cfg):
    model = ToyDiT(num_double, num_single)
    return model, BlockDanceEngine(BlockDanceConfig(**cfg), model.num_blocks)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_n1_is_bit_identical(mode):
    model, engine = make(N=1, mode=mode, start_percent=0.0, end_percent=1.0)
    base, _ = sample(model)
    out, stats = sample(model, engine)
    assert torch.equal(base, out)
    assert stats.block_calls_skipped == 0 and len(stats.steps_reused) == 0


def test_skipped_blocks_really_do_not_run():
    model, engine = make(N=3, depth=0.75, start_percent=0.0, end_percent=1.0)
    before = model.block_calls()
    _, stats = sample(model, engine)
    ran = model.block_calls() - before
    reuse_steps = sum(1 for k in range(12) if k % 3 != 0)  # groups of 3 over the whole run
    assert len(stats.steps_reused) == reuse_steps == 8
    assert stats.block_calls_skipped == reuse_steps * 6      # 0.75 of 8 blocks
    assert ran == stats.block_calls_run == 12 * 8 - reuse_steps * 6
    assert stats.ideal_speedup == pytest.approx(96 / (96 - 48))


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_modes_differ_but_stay_close(mode):
    model, _ = make()
    base, _ = sample(model)
    out_bd, _ = sample(model, BlockDanceEngine(BlockDanceConfig(mode="blockdance"), 8))
    out_delta, _ = sample(model, BlockDanceEngine(BlockDanceConfig(mode="delta"), 8))
    assert not torch.equal(out_bd, base) and not torch.equal(out_delta, base) and not torch.equal(out_bd, out_delta)
    for out in (out_bd, out_delta):
        assert torch.isfinite(out).all()
        assert (out - base).norm() / base.norm() < 0.1


def test_cached_tensor_survives_in_place_blocks():
    """The stored F_i must equal the block output at store time although later blocks add into it."""
    model, engine = make(N=2, start_percent=0.0, end_percent=1.0, depth=0.5)
    engine.start_run()
    x = torch.randn(2, 6, 8)
    seen = {}

    def spy(j, state, compute, to_stage):
        out = engine.run_block(j, state, compute, to_stage)
        if j == engine.cache_index:
            seen["out"] = out.clone()
        return out

    engine.begin_call(SIGMAS, SIGMAS[0], ["c"])
    model(x, SIGMAS[0], hook=spy)
    engine.end_call()
    assert engine.plan[0] is StepAction.CACHE
    stored = engine.cache.lookup("c", engine.cache._entries["c"].input_signature).features
    assert torch.equal(stored, seen["out"])
    engine.finish_run()
    assert len(engine.cache) == 0


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_chunks_batched_or_split_use_their_own_cache(mode):
    model, _ = make()
    keys = ("cond", "uncond")
    batched, s1 = sample(model, BlockDanceEngine(BlockDanceConfig(mode=mode), 8), keys=keys)
    split, s2 = sample(model, BlockDanceEngine(BlockDanceConfig(mode=mode), 8), keys=keys, split=True)
    assert torch.allclose(batched, split, atol=1e-5)
    assert len(s1.steps_reused) == len(s2.steps_reused) > 0
    # Swapping the chunk order in the batch must not swap the caches.
    eng = BlockDanceEngine(BlockDanceConfig(mode=mode), 8)
    x = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(0))
    swapped, _ = sample(model, eng, keys=("uncond", "cond"), x=torch.cat(x.chunk(2)[::-1]))
    assert torch.allclose(torch.cat(swapped.chunk(2)[::-1]), batched, atol=1e-5)


def test_layout_change_falls_back_to_full_compute():
    model, engine = make(N=2, start_percent=0.0, end_percent=1.0)
    engine.start_run()
    engine.begin_call(SIGMAS, SIGMAS[0], ["c"])
    model(torch.randn(1, 6, 8), SIGMAS[0], hook=engine.run_block)
    engine.end_call()
    assert engine.begin_call(SIGMAS, SIGMAS[1], ["c"]) is StepAction.REUSE
    before = model.block_calls()
    model(torch.randn(1, 10, 8), SIGMAS[1], hook=engine.run_block)  # other resolution
    engine.end_call()
    assert model.block_calls() - before == 8
    assert engine.stats.fallback_calls == 1 and not engine.stats.steps_reused


def test_second_forward_at_same_sigma_keeps_the_step_cache():
    """Heun's correction and guidance tricks call the model again at a step's sigma."""
    model, engine = make(N=2, start_percent=0.0, end_percent=1.0)
    engine.start_run()
    x = torch.randn(1, 6, 8)
    for inp in (x, x * 3):
        engine.begin_call(SIGMAS, SIGMAS[0], ["c"])
        model(inp, SIGMAS[0], hook=engine.run_block)
        engine.end_call()
    first = engine.cache._entries["c"].features.clone()
    engine.finish_run()
    engine.start_run()
    engine.begin_call(SIGMAS, SIGMAS[0], ["c"])
    model(x, SIGMAS[0], hook=engine.run_block)
    engine.end_call()
    assert torch.equal(engine.cache._entries["c"].features, first)
    assert engine.stats.steps_seen == {0}


def test_runs_are_independent_and_free_the_cache():
    model, engine = make(mode="delta")
    a, sa = sample(model, engine)
    assert len(engine.cache) == 0 and sa.cache_peak_bytes > 0
    # an interrupted run leaves state behind only until the next run starts
    engine.start_run()
    engine.begin_call(SIGMAS, SIGMAS[5], ["cond"])
    model(torch.randn(2, 6, 8), SIGMAS[5], hook=engine.run_block)
    b, sb = sample(model, engine)
    assert torch.equal(a, b) and sa.steps_reused == sb.steps_reused


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
@pytest.mark.parametrize("depth", [0.25, 0.75, 1.0])  # cache point in double stage, single stage, last block
def test_two_stage_stack(mode, depth):
    model, _ = make(num_double=2, num_single=2)
    base, _ = sample(model)
    engine = BlockDanceEngine(BlockDanceConfig(mode=mode, depth=depth), model.num_blocks)
    out, stats = sample(model, engine)
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert (out - base).norm() / base.norm() < 0.2
    assert stats.block_calls_skipped == len(stats.steps_reused) * engine.skipped


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_plain_fast_path_counts_and_confirms_full_steps(mode):
    """Hooks that ask runs_plainly first (as the ComfyUI hooks do) compute full steps directly; the
    blocks they count must be the blocks that really ran, and the call must count as started."""
    model, engine = make(N=3, mode=mode, depth=0.5, start_percent=0.25, end_percent=0.9)
    reference, _ = sample(model, BlockDanceEngine(engine.config, model.num_blocks))
    plain = {"blocks": 0, "full_calls": 0}

    def hook(index, state, compute, to_stage=None):
        if engine.runs_plainly(index):
            if index in engine.hooked_blocks:
                plain["blocks"] += 1
                assert engine.current_action is StepAction.FULL
                plain["full_calls"] += index == 0
            return compute(state)
        return engine.run_block(index, state, compute, to_stage)

    before = model.block_calls()
    out, stats = sample(model, engine, hook=hook)
    assert torch.equal(out, reference)
    assert stats.block_calls_run == model.block_calls() - before  # counted == executed
    assert plain["full_calls"] > 0 and plain["blocks"] == plain["full_calls"] * engine.skipped
    assert stats.block_calls_total == 12 * model.num_blocks
