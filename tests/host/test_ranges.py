"""Reuse of a rear or middle block range (Delta-DiT) inside real ComfyUI, for every family the tiny-model
factory builds: exactly the range's blocks skip, the output stays finite and close to the uncached one,
and keeping a range without ever reusing it changes nothing."""
import sys

import pytest
import torch

from helpers import PACK_MODULE, BlockCounter, assert_finite, rel_err, sample, sample_recorded
from test_patch_families import FAMILIES, family_of, size

STEPS = 10
_uncached = {}


def core():
    return sys.modules[f"{PACK_MODULE}.blockdance_core"]


def apply(tm, policy, mode):
    return sys.modules[f"{PACK_MODULE}.nodes.patcher"].apply_blockdance(tm.patcher, policy, mode)


def range_policy(blocks, mode, reuse=True):
    """Caches `blocks` on even steps and reuses them on odd ones (never, with reuse=False)."""
    c = core()

    class RangePolicy(c.StepPolicy):
        name = "range"

        def ranges(self, num_blocks):
            return ((blocks, mode),)

        def start(self, timeline, num_blocks):
            return c.PlannedRun([c.reuse_step(blocks, mode, k - 1) if reuse and k % 2 else c.cache_step(blocks, mode)
                                 for k in range(timeline.num_steps)])

    return RangePolicy()


def where(tm, kind):
    """The tiny models have 4 blocks (one stage) or 2 + 3 (double, then single): the rear range is the
    last two blocks, the middle range all but the first and the last (across the join on two-stage ones)."""
    n = tm.num_blocks
    return {"rear": range(n - 2, n), "middle": range(1, n - 1)}[kind]


# HiDream's single blocks see the hidden state joined with a different Llama layer each; delta there needs
# the range inside one stage (its cross-stage middle range is refused: test_delta_across_hidreams_join...).
WITHIN_ONE_STAGE = {("hidream", "middle"): range(3, 4)}


@pytest.fixture(params=FAMILIES)
def tm(request, tiny):
    return tiny.build(request.param, seed=0, **size(request.param))


def uncached(tm):
    if tm.family not in _uncached:
        _uncached[tm.family] = sample(tm.patcher, tm, steps=STEPS)
    return _uncached[tm.family]


def stacks(tm, patched):
    dm = patched.get_model_object("diffusion_model")
    return dm, [s.container for s in family_of(patched).stages]


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
@pytest.mark.parametrize("kind", ["rear", "middle"])
def test_a_range_skips_exactly_its_blocks_and_stays_close(pack, tm, kind, mode):
    blocks = where(tm, kind)
    if mode == "delta":
        blocks = WITHIN_ONE_STAGE.get((tm.family, kind), blocks)
    patched = apply(tm, range_policy(blocks, mode), mode)
    counter = BlockCounter(*stacks(tm, patched))
    try:
        out, record = sample_recorded(pack, patched, tm, steps=STEPS)
    finally:
        counter.close()
    assert counter.counts == [5 if j in blocks else 10 for j in range(tm.num_blocks)]
    assert record.steps_reused == {1, 3, 5, 7, 9} and record.fallback_calls == 0
    assert {tuple(s.blocks) for s in record.steps} == {(blocks.start, blocks.stop)}
    assert_finite(out)
    base = uncached(tm)
    assert not torch.equal(out, base)
    assert rel_err(out, base) < 0.1, rel_err(out, base)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_keeping_a_range_without_reusing_it_is_bit_identical(pack, tm, mode):
    for kind in ("rear", "middle"):
        blocks = where(tm, kind) if mode == "blockdance" else WITHIN_ONE_STAGE.get((tm.family, kind), where(tm, kind))
        out, record = sample_recorded(pack, apply(tm, range_policy(blocks, mode, reuse=False), mode), tm, steps=STEPS)
        assert [s.done for s in record.steps] == ["cache"] * STEPS, kind
        assert torch.equal(out, uncached(tm)), kind


def test_delta_across_hidreams_join_is_refused_when_patching(pack, tiny):
    hidream = tiny.build("hidream", seed=0)
    with pytest.raises(core().BlockDanceConfigError) as err:
        apply(hidream, range_policy(range(1, 4), "delta"), "delta")
    message = str(err.value)
    assert "delta mode on hidream cannot skip blocks 1..3" in message
    assert "double_stream_blocks into its single_stream_blocks" in message and "mode=blockdance" in message
    apply(hidream, range_policy(range(1, 4), "blockdance"), "blockdance")   # reusing the output is fine


@pytest.fixture(scope="module")
def vace(tiny):
    return tiny.build("wan_vace", seed=0)


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
@pytest.mark.parametrize("blocks, vace_inside", [(range(2, 4), [1]), (range(1, 3), [1]), (range(3, 4), []),
                                                 (range(1, 2), [])])   # VACE blocks sit at layers 0 and 2
def test_vace_blocks_inside_a_rear_or_middle_range_skip_on_reuse(pack, vace, blocks, vace_inside, mode):
    dm = vace.patcher.get_model_object("diffusion_model")
    assert sorted(dm.vace_layers_mapping.items()) == [(0, 0), (2, 1)]
    patched = apply(vace, range_policy(blocks, mode), mode)
    counter = BlockCounter(dm, ["blocks", "vace_blocks"])
    try:
        out, record = sample_recorded(pack, patched, vace, steps=STEPS)
    finally:
        counter.close()
    assert record.steps_reused == {1, 3, 5, 7, 9}
    assert counter.counts[:4] == [5 if j in blocks else 10 for j in range(4)]
    assert counter.counts[4:] == [5 if k in vace_inside else 10 for k in range(2)]
    assert_finite(out)
    assert rel_err(out, uncached(vace)) < 0.1, rel_err(out, uncached(vace))



@pytest.mark.parametrize("blocks", [range(3, 5), range(1, 4)])   # rear (single blocks), middle (across the join)
def test_delta_over_a_range_with_a_controlnet_stays_as_close_as_without(pack, tiny, blocks):
    """ControlNet residuals land after blocks inside the range: delta keeps only the range's own change,
    so a reuse step's residuals are not counted twice (as for prefixes: test_host_robustness R2)."""
    from test_host_robustness import residual_control, with_control
    flux = tiny.build("flux", seed=0)
    controlled = with_control(flux, residual_control(16, 128, inputs=2, outputs=3))
    err = {}
    for name, tm in (("plain", flux), ("controlnet", controlled)):
        base = sample(flux.patcher, tm, steps=STEPS)
        for mode in ("blockdance", "delta"):
            out, record = sample_recorded(pack, apply(flux, range_policy(blocks, mode), mode), tm, steps=STEPS)
            assert record.steps_reused == {1, 3, 5, 7, 9}
            err[name, mode] = rel_err(out, base)
    assert err["controlnet", "delta"] < 3 * err["plain", "delta"], err
    assert err["controlnet", "delta"] < err["controlnet", "blockdance"] / 3, err
