"""One SamplingRun shared by parallel forwards, as ComfyUI core's multi-GPU split shares it: each
conditioning chunk's forward runs on its own thread (one per device) within one model evaluation.

The forwards are driven in lockstep (a barrier before every hooked block), so every begin_call,
run_block and end_call of one thread falls between those of the other."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from blockdance_core import BlockDanceConfig, GroupPolicy, PatchSpec, PolicyRun, StepPolicy, Timeline
from blockdance_core import FULL, cache_step, reuse_step

from toy_dit import ToyDiT

SIGMAS = [1.0 - k / 12 for k in range(12)] + [0.0]
KEYS = ("cond", "uncond")


def lockstep_hook(run, key, barrier):
    """The host's block hook for the forward of chunk `key`: waits for the other thread's forward to
    reach the same block, then checks the run shows this thread its own forward."""
    def hook(j, state, compute, to_stage):
        if j not in run.spec.hooked_blocks:
            return compute(state)
        barrier.wait()
        assert run.call is not None and run.call.keys == [key], f"{key} sees {run.call and run.call.keys}"
        out = run.run_block(j, state, compute, to_stage)
        assert run.call.keys == [key]
        return out
    return hook


def forward(run, model, x, sigma, key, hook=None):
    run.begin_call(sigma, [key], x=x)
    try:
        return model(x, sigma, hook=hook)
    finally:
        run.end_call()


def sample(model, spec, parallel, keep=None):
    """Euler over the toy, each chunk in its own forward: serially, or one thread per chunk (lockstep).
    keep(run) is called after every step, while the run's cache is alive."""
    x = torch.randn(2 * len(KEYS), 6, 8, generator=torch.Generator().manual_seed(0))
    run = spec.new_run(Timeline.build(SIGMAS))
    barrier = threading.Barrier(len(KEYS), timeout=20)
    with ThreadPoolExecutor(len(KEYS)) as pool:
        for k in range(len(SIGMAS) - 1):
            run.begin_evaluation()
            chunks = list(zip(KEYS, x.chunk(len(KEYS))))
            if parallel:
                outs = list(pool.map(lambda c: forward(run, model, c[1], SIGMAS[k], c[0],
                                                       lockstep_hook(run, c[0], barrier)), chunks))
            else:
                outs = [forward(run, model, xc, SIGMAS[k], key, lockstep_hook(run, key, _NoBarrier())) for key, xc in chunks]
            run.step_done(k)
            if keep is not None:
                keep(run)
            x = x + (SIGMAS[k + 1] - SIGMAS[k]) * torch.cat(outs)
    return x, run.finish()


class _NoBarrier:
    def wait(self):
        pass


def group_spec(model, mode):
    policy = GroupPolicy(BlockDanceConfig(mode=mode, depth=0.75, N=2, start_percent=0.0, end_percent=1.0))
    return PatchSpec(policy, model.num_blocks)


def test_each_thread_sees_its_own_forward_in_flight():
    model = ToyDiT(0, 8)
    run = group_spec(model, "blockdance").new_run(Timeline.build(SIGMAS))
    barrier = threading.Barrier(2, timeout=20)
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(1))
    seen = {}

    def one_forward(key, xc):
        hook = lockstep_hook(run, key, barrier)
        run.begin_call(SIGMAS[0], [key], x=xc)
        barrier.wait()   # both forwards are in flight before either runs a block
        try:
            model(xc, SIGMAS[0], hook=hook)
            seen[key] = (run.call.keys, run.side.kind)
        finally:
            run.end_call()
        return run.call

    run.begin_evaluation()
    with ThreadPoolExecutor(2) as pool:
        after = list(pool.map(one_forward, KEYS, x.chunk(2)))
    assert seen == {key: ([key], run.decisions[0].kind) for key in KEYS}
    assert after == [None, None]   # end_call closed each thread's own forward
    assert run.record.steps[0].calls == 2 and run.record.steps[0].blocks_run == 2 * model.num_blocks


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_parallel_chunks_match_the_serial_run_bit_for_bit(mode):
    model = ToyDiT(0, 8)
    spec = group_spec(model, mode)
    cache_keys = []
    serial, serial_record = sample(model, spec, parallel=False)
    parallel, record = sample(model, spec, parallel=True, keep=lambda run: cache_keys.append(sorted(run.cache.keys())))
    assert torch.equal(parallel, serial)
    assert record.to_dict() == serial_record.to_dict()
    assert len(record.steps_reused) == 6
    assert all(record.steps[k].reused_calls == 2 for k in record.steps_reused)   # each chunk reused its own entry
    assert cache_keys[-1] == sorted(KEYS)   # one entry per chunk, never one shared


class _SlowClosedLoop(StepPolicy):
    """Decides each step from the block input it is shown (the sign of its first value, which differs
    between the chunks), slowly, so two forwards reaching the step together would both decide, and
    could decide differently, were the decision not made once."""
    name = "closed-loop"

    def ranges(self, num_blocks):
        return ((range(0, num_blocks - 2), "blockdance"),)

    def start(self, timeline, num_blocks):
        return _SlowClosedLoopRun(range(0, num_blocks - 2))


class _SlowClosedLoopRun(PolicyRun):
    def __init__(self, blocks):
        self.blocks, self.decided, self.last_cache = blocks, [], None

    def decide(self, seen):
        self.decided.append(seen.step)
        time.sleep(0.02)
        if seen.step % 2 == 1 and self.last_cache == seen.step - 1:
            return reuse_step(self.blocks, "blockdance", self.last_cache)
        if float(seen.block_input.detach().flatten()[0]) > 0:   # the chunks differ: whose forward came first decides
            self.last_cache = seen.step
            return cache_step(self.blocks, "blockdance")
        return FULL


def test_a_step_is_decided_once_and_every_thread_follows_it():
    model = ToyDiT(0, 8)
    spec = PatchSpec(_SlowClosedLoop(), model.num_blocks)
    decided = []
    out, record = sample(model, spec, parallel=True, keep=lambda run: decided.append(list(run.policy.decided)))
    assert torch.isfinite(out).all()
    assert decided[-1] == list(range(len(SIGMAS) - 1))   # one decision per step, however many threads
    for step in record.steps:
        assert step.calls == 2
        assert (step.reused_calls, step.cached_calls) == {"reuse": (2, 0), "cache": (0, 2), "full": (0, 0)}[step.planned]
