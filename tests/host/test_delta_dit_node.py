"""The BlockDance Delta-DiT node in real ComfyUI: registered like the other nodes, its defaults (the paper's)
skip the rear blocks before the boundary and the front blocks after it on every family, N=1 changes
nothing, and bad settings fail validation with what is allowed."""
import asyncio
import inspect
import sys

import pytest
import torch

from helpers import PACK_MODULE, BlockCounter, LogCapture, assert_finite, node, rel_err, sample, sample_recorded
from test_patch_families import FAMILIES, family_of, size

DEFAULTS = dict(boundary=0.6, rear_size=0.75, front_size=0.75, N=2, start_percent=0.0, end_percent=1.0, mode="delta")


def delta_dit(pack, model, **settings):
    return node(pack, "BlockDanceDeltaDiT").execute(model, **{**DEFAULTS, **settings}).result[0]


@pytest.fixture(params=FAMILIES)
def tm(request, tiny):
    return tiny.build(request.param, seed=0, **size(request.param))


def test_registered_beside_the_other_nodes_with_a_tooltip_on_every_input(pack):
    import comfy_api.latest as api
    nodes = asyncio.run(pack.comfy_entrypoint().get_node_list())
    (cls,) = [c for c in nodes if c.GET_SCHEMA().node_id == "BlockDanceDeltaDiT"]
    schema = cls.GET_SCHEMA()
    assert schema.display_name == "BlockDance Delta-DiT" and schema.category == "model_patches/blockdance"
    assert [i.id for i in schema.inputs] == ["model", *DEFAULTS]
    assert all(i.tooltip for i in schema.inputs)
    assert {i.id: i.default for i in schema.inputs[1:]} == DEFAULTS   # the paper's settings
    assert [type(o) for o in schema.outputs] == [api.io.Model.Output]
    assert "0.6" in schema.description and "1.6x" in schema.description
    required = cls.GET_NODE_INFO_V1()["input"]["required"]   # what object_info sends the frontend
    assert list(required) == ["model", *DEFAULTS] and all(options[1]["tooltip"] for options in required.values())


def test_the_papers_settings_skip_the_rear_then_the_front(pack, tm):
    """10 steps: reuse steps 1, 3, 5 (before 0.6) skip the rear 0.75 of the stack, 7 and 9 the front 0.75."""
    mode = "blockdance" if tm.family == "hidream" else "delta"   # HiDream: delta across its join is refused
    patched = delta_dit(pack, tm.patcher, mode=mode)
    counter = BlockCounter(patched.get_model_object("diffusion_model"), [s.container for s in family_of(patched).stages])
    log = LogCapture()
    try:
        out, record = sample_recorded(pack, patched, tm, steps=10)
    finally:
        counter.close()
        log.close()
    n = tm.num_blocks
    k = round(0.75 * n)
    rear, front = range(n - k, n), range(k)
    assert counter.counts == [10 - 3 * (j in rear) - 2 * (j in front) for j in range(n)]
    assert record.steps_reused == {1, 3, 5, 7, 9}
    assert [tuple(record.steps[s].blocks) for s in (1, 5, 7)] == [(rear.start, rear.stop)] * 2 + [(0, k)]
    (run,) = log.runs()
    assert (run["family"], run["mode"], run["boundary"], run["N"], run["window"]) == (
        family_of(patched).name, mode, "0.60", "2", "0.00-1.00")
    assert (run["rear"], run["front"]) == (f"{n - k}-{n - 1}", f"0-{k - 1}")
    assert run["reused"] == "5/10" and run["blocks_skipped"] == f"{5 * k}/{10 * n}"
    assert_finite(out)
    assert rel_err(out, sample(tm.patcher, tm, steps=10)) < 0.1   # 0.028 at most on the tiny models


@pytest.mark.parametrize("mode", ["blockdance", "delta"])
def test_n1_is_bit_identical(pack, tm, mode):
    settings = dict(mode=mode, N=1)
    if mode == "delta" and tm.family == "hidream":
        settings.update(rear_size=0.4, front_size=0.4)   # each range stays within one of its two stages
    out = sample(delta_dit(pack, tm.patcher, **settings), tm, steps=6)
    assert torch.equal(out, sample(tm.patcher, tm, steps=6))


def test_delta_across_hidreams_join_is_a_clear_error(pack, tiny):
    hidream = tiny.build("hidream", seed=0)
    errors = sys.modules[f"{PACK_MODULE}.blockdance_core"]
    with pytest.raises(errors.BlockDanceConfigError, match=r"delta mode on hidream cannot skip blocks 1\.\.4: they run "
                                                           r"from its double_stream_blocks into its single_stream_blocks"):
        delta_dit(pack, hidream.patcher)
    with pytest.raises(errors.BlockDanceConfigError, match=r"within the first 2 of its 5 blocks .* Lower depth "
                                                           r"\(front_size on BlockDance Delta-DiT\)"):
        delta_dit(pack, hidream.patcher, rear_size=0.4)
    delta_dit(pack, hidream.patcher, rear_size=0.4, front_size=0.4)


def cls_of():
    return getattr(sys.modules[f"{PACK_MODULE}.nodes.delta_dit_node"], "BlockDanceDeltaDiT")


@pytest.mark.parametrize("inputs, needle", [
    ({"boundary": 1.5}, "boundary=1.5 must lie in [0, 1]: the point of the sampling timeline"),
    ({"rear_size": 0.0}, "rear_size=0.0 must lie in (0, 1]"),
    ({"front_size": 1.01}, "front_size=1.01 must lie in (0, 1]"),
    ({"N": 0}, "N=0 must be an integer in [1, 100]"),
    ({"N": 101}, "N=101 must be an integer in [1, 100]"),
    ({"start_percent": 0.6, "end_percent": 0.6}, "start_percent=0.6 must be below end_percent=0.6"),
    ({"end_percent": 1.2}, "end_percent=1.2 must lie in [0, 1]"),
])
def test_out_of_range_settings_fail_validation(pack, inputs, needle):
    cls = cls_of()
    named = {k: v for k, v in DEFAULTS.items() if k != "mode"}
    assert cls.validate_inputs(**named) is True
    assert cls.validate_inputs(**{k: None for k in named}) is True   # linked: checked when it runs
    problem = cls.validate_inputs(**{**named, **inputs})
    assert isinstance(problem, str) and needle in problem, problem
    params = inspect.signature(cls.validate_inputs).parameters
    assert not any(p.kind == p.VAR_KEYWORD for p in params.values())   # core keeps its checks on the rest
    assert set(params) == set(named)


def test_a_linked_input_never_makes_a_given_one_wrong(pack):
    cls = cls_of()
    assert cls.validate_inputs(start_percent=0.99, end_percent=None) is True
    assert cls.validate_inputs(start_percent=None, end_percent=0.01) is True
    assert "start_percent=1.0 must be below" in cls.validate_inputs(start_percent=1.0, end_percent=None)
