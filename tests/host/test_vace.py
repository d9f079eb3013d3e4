"""Wan VACE: the VACE branch must not keep computing inside the skipped range."""
import pytest
import torch

from helpers import BlockCounter, assert_finite, patch, rel_err, sample, sample_recorded


@pytest.fixture(scope="module")
def vace(tiny):
    return tiny.build("wan_vace", seed=0)


@pytest.mark.parametrize("depth, inside", [(0.75, [0, 1]), (0.5, [0])])  # VACE blocks sit at layers 0 and 2
@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_vace_blocks_inside_the_range_skip_on_reuse(pack, vace, depth, inside, mode):
    dm = vace.patcher.get_model_object("diffusion_model")
    assert sorted(dm.vace_layers_mapping.items()) == [(0, 0), (2, 1)]
    patched = patch(pack, vace.patcher, mode=mode, depth=depth, N=2, start_percent=0.0, end_percent=1.0)
    counter = BlockCounter(dm, ["vace_blocks"])
    try:
        out, record = sample_recorded(pack, patched, vace, steps=10)
    finally:
        counter.close()
    assert_finite(out)
    reused = len(record.steps_reused)
    assert reused == 5
    expected = [10 - reused if k in inside else 10 for k in range(2)]
    assert counter.counts == expected
    assert rel_err(out, sample(vace.patcher, vace, steps=10)) < 0.5


def test_vace_reuse_leaves_the_block0_input_alone(pack, vace):
    """Later VACE blocks read the block-0 input (`x_orig`), which identity-skipped blocks pass on by
    reference: on reuse forwards the VACE adds inside the range must not land on it."""
    patched = patch(pack, vace.patcher, depth=0.5, N=2, start_percent=0.0, end_percent=1.0)
    dm = vace.patcher.get_model_object("diffusion_model")
    embedded, seen_by_vace = [], []
    hooks = [
        dm.patch_embedding.register_forward_hook(
            lambda module, args, out: embedded.append(out.flatten(2).transpose(1, 2).clone())),
        dm.vace_blocks[1].register_forward_pre_hook(
            lambda module, args, kwargs: seen_by_vace.append(kwargs["x"].clone()), with_kwargs=True),
    ]
    try:
        _, record = sample_recorded(pack, patched, vace, steps=6)
    finally:
        for h in hooks:
            h.remove()
    assert len(record.steps_reused) == 3
    assert len(embedded) == len(seen_by_vace) == 6
    for x_orig, x_seen in zip(embedded, seen_by_vace):
        assert torch.equal(x_orig, x_seen)
