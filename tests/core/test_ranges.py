"""Reuse of any block range [a, c] (Delta-DiT): rear and middle ranges as well as prefixes, in one stage
and across the double -> single join of two-stage models."""
import pytest
import torch
from torch import nn

from blockdance_core import PlannedRun, StepPolicy, Timeline, cache_step, reuse_step
from test_engine import SIGMAS, forward, hooks_of, sample, spec_for
from toy_dit import ToyDiT


class RangePolicy(StepPolicy):
    """Caches `blocks` on even steps and reuses them on odd steps (or only caches, reuse=False)."""
    name = "range"

    def __init__(self, blocks, mode, reuse=True):
        self.range, self.mode, self.reuse = blocks, mode, reuse

    def ranges(self, num_blocks):
        return ((self.range, self.mode),)

    def start(self, timeline, num_blocks):
        return PlannedRun([reuse_step(self.range, self.mode, k - 1) if self.reuse and k % 2 else
                           cache_step(self.range, self.mode) for k in range(timeline.num_steps)])


class ConstBlock(nn.Module):
    """A block whose change does not depend on its input or the step: its features are static."""

    def __init__(self, width, seed):
        super().__init__()
        self.c = torch.randn(width, generator=torch.Generator().manual_seed(seed))
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        x += self.c   # in place, like ComfyUI's blocks
        return x


def calls(model):
    return [b.calls for b in (*model.double_img, *model.single_blocks)]


RANGES = {  # (double, single, range): rear, middle and a range crossing the double -> single join
    "rear": (0, 8, range(5, 8)),
    "middle": (0, 8, range(2, 6)),
    "last block": (0, 8, range(7, 8)),
    "rear two-stage": (2, 4, range(3, 6)),
    "across the join": (2, 4, range(1, 4)),
}


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
@pytest.mark.parametrize("case", list(RANGES))
def test_a_range_skips_exactly_its_blocks(case, mode):
    num_double, num_single, blocks = RANGES[case]
    model = ToyDiT(num_double, num_single)
    spec = spec_for(model, policy=RangePolicy(blocks, mode))
    assert spec.hooked_blocks == blocks   # hooks on the range only: blocks before it carry none
    before = calls(model)
    out, record = sample(model, spec)
    ran = [n - b for n, b in zip(calls(model), before)]
    assert ran == [6 if j in blocks else 12 for j in range(model.num_blocks)]   # 6 reuse steps of 12
    assert record.steps_reused == {1, 3, 5, 7, 9, 11}
    assert record.block_calls_skipped == 6 * len(blocks)
    assert all(s.blocks == [blocks.start, blocks.stop] for s in record.steps)
    base, _ = sample(model)
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert (out - base).norm() / base.norm() < 0.2


def _static(model, blocks):
    """`model` with the blocks of `blocks` made static (their change ignores input and step)."""
    for j in blocks:
        if j < model.num_double:
            model.double_img[j], model.double_txt[j] = ConstBlock(8, 10 + j), ConstBlock(8, 50 + j)
        else:
            model.single_blocks[j - model.num_double] = ConstBlock(8, 10 + j)
    return model


@pytest.mark.parametrize("case", list(RANGES))
def test_delta_over_a_static_range_reproduces_the_uncached_output(case):
    """Delta keeps the range's own change (output - input of the range) and adds it to the current
    input of its first block: with static blocks in the range that is exactly what they compute, whatever
    the blocks before the range did this step. Plain reuse of the cached output is not."""
    num_double, num_single, blocks = RANGES[case]
    model = _static(ToyDiT(num_double, num_single), blocks)
    base, _ = sample(model)
    delta, record = sample(model, spec_for(model, policy=RangePolicy(blocks, "delta")))
    assert record.block_calls_skipped == 6 * len(blocks)
    assert torch.allclose(delta, base, atol=1e-5), (delta - base).abs().max()
    stale, _ = sample(model, spec_for(model, policy=RangePolicy(blocks, "blockdance")))
    if blocks.start > 0:   # blocks before the range change their output every step: the cached one is stale
        assert not torch.allclose(stale, base, atol=1e-3)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
@pytest.mark.parametrize("case", list(RANGES))
def test_cache_steps_alone_are_bit_identical(case, mode):
    """Keeping a range's result on every step and never reusing it changes nothing (N=1)."""
    num_double, num_single, blocks = RANGES[case]
    model = ToyDiT(num_double, num_single)
    base, _ = sample(model)
    out, record = sample(model, spec_for(model, policy=RangePolicy(blocks, mode, reuse=False)))
    assert torch.equal(out, base)
    assert record.block_calls_skipped == 0 and [s.done for s in record.steps] == ["cache"] * 12


def test_delta_over_a_middle_range_sums_the_blocks_own_change_under_residuals():
    """With residuals landing between blocks (ControlNet), a middle range keeps only its blocks' own
    change: the residuals added after blocks inside the range are not part of it."""
    model = ToyDiT(0, 8)
    blocks = range(3, 6)
    spec = spec_for(model, policy=RangePolicy(blocks, "delta"))
    residuals = [0.5 * torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(9 + j)) for j in range(8)]
    run = spec.new_run(Timeline.build(SIGMAS))
    x = torch.randn(1, 6, 8)
    run.begin_call(SIGMAS[0], ["c"], residuals="a ControlNet is attached")
    model(x.clone(), SIGMAS[0], hook=hooks_of(run), residuals=residuals)
    run.end_call()
    h, expected = x.clone(), 0
    for j in range(6):
        before = h.clone()
        h = model.single_blocks[j](h, SIGMAS[0])
        if j in blocks:
            expected = expected + (h - before)
        h += residuals[j]
    assert torch.allclose(run.cache.entry("c").features, expected, atol=1e-5)
    before = calls(model)
    forward(run, model, torch.randn(1, 6, 8), SIGMAS[1], ["c"])
    assert run.record.steps[1].reused_calls == 1
    assert [n - b for n, b in zip(calls(model), before)] == [1, 1, 1, 0, 0, 0, 1, 1]
