"""The node itself: bad input gives a clear error, repeated patching and downstream clones behave."""
import sys

import pytest
import torch

from helpers import PACK_MODULE, description_of, patch, recorded_runs, sample


@pytest.fixture(scope="module")
def sd3(tiny):
    return tiny.build("sd3")


@pytest.mark.parametrize("kwargs, needle", [
    ({"depth": 0.0}, "depth=0.0 is outside (0, 1]"),
    ({"depth": 1.2}, "outside (0, 1]"),
    ({"N": 0}, "N=0 must be an integer >= 1"),
    ({"start_percent": 0.9, "end_percent": 0.5}, "must be below end_percent"),
    ({"mode": "fast"}, "allowed: blockdance, delta"),
])
def test_bad_settings(pack, sd3, kwargs, needle):
    config_error = sys.modules[f"{PACK_MODULE}.blockdance_core.config"].BlockDanceConfigError
    with pytest.raises(config_error) as err:
        patch(pack, sd3.patcher, **kwargs)
    assert needle in str(err.value)


def test_unsupported_model_names_itself_and_the_supported_ones(pack, comfy):
    import comfy.model_patcher

    class TinyUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.diffusion_model = torch.nn.Linear(2, 2)

    model = comfy.model_patcher.ModelPatcher(TinyUNet(), torch.device("cpu"), torch.device("cpu"))
    unsupported = sys.modules[f"{PACK_MODULE}.nodes.families"].UnsupportedModelError
    with pytest.raises(unsupported) as err:
        patch(pack, model)
    message = str(err.value)
    assert "torch.nn.modules.linear.Linear" in message and "flux" in message and "pixart" in message


def test_patching_twice_replaces_instead_of_stacking(pack, sd3):
    once = patch(pack, sd3.patcher, depth=0.75)
    twice = patch(pack, once, depth=0.25)
    dit = twice.model_options["transformer_options"]["patches_replace"]["dit"]
    assert sorted(dit) == [("double_block", 0)]
    assert all(len(twice.wrappers[kind]["blockdance"]) == 1 for kind in ("apply_model", "outer_sample", "predict_noise"))


def test_delta_on_a_stage_it_cannot_map_is_a_clear_error(pack, tiny):
    hidream = tiny.build("hidream")
    config_error = sys.modules[f"{PACK_MODULE}.blockdance_core.config"].BlockDanceConfigError
    with pytest.raises(config_error) as err:
        patch(pack, hidream.patcher, mode="delta", depth=0.75)
    assert "delta mode on hidream needs the cache point within the first 2 of its 5 blocks" in str(err.value)
    assert "depth <= 0.40" in str(err.value) and "mode=blockdance" in str(err.value)


def test_a_clone_made_downstream_shares_the_description_and_runs_on_its_own(pack, sd3):
    """A LoRA or other patch node placed after ours clones the model, which copies model_options (cores
    before v0.14 deep-copy the patch objects too, later ones copy only the dicts and lists and share
    them): the immutable description is shared, the copy's patches still recognise it, the copy's
    patch table is its own, and each sampling run gets a run object of its own."""
    patched = patch(pack, sd3.patcher, N=2, start_percent=0.0)
    downstream = patched.clone()
    description = description_of(downstream)
    assert description is description_of(patched)
    dit = downstream.model_options["transformer_options"]["patches_replace"]["dit"]
    assert all(p.description is description for p in dit.values())
    assert dit is not patched.model_options["transformer_options"]["patches_replace"]["dit"]
    with recorded_runs(pack) as reports:
        out = sample(downstream, sd3)
        again = sample(patched, sd3)
    assert torch.equal(out, again)
    assert len(reports) == 2 and reports[0].record is not reports[1].record
    assert reports[0].record.to_dict() == reports[1].record.to_dict() and reports[0].record.steps_reused


@pytest.mark.parametrize("inputs, needle", [
    ({"depth": 0.0}, "depth=0.0 is outside (0, 1]"),
    ({"depth": 1.5}, "depth=1.5 is outside (0, 1]"),
    ({"N": 0}, "N=0 must be an integer in [1, 100]"),
    ({"N": 101}, "N=101 must be an integer in [1, 100]"),
    ({"start_percent": 0.6, "end_percent": 0.6}, "start_percent=0.6 must be below end_percent=0.6"),
    ({"start_percent": 1.2}, "start_percent=1.2 must lie in [0, 1]"),
])
def test_out_of_range_settings_fail_validation(pack, inputs, needle):
    """Issue 20 item 10: out-of-range settings fail at validation (the frontend marks the node red)
    instead of inside the run; a linked input (None at validation) is checked when it runs."""
    cls = getattr(sys.modules[f"{PACK_MODULE}.nodes.patch_node"], "BlockDancePatch")
    defaults = {"depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95}
    assert cls.validate_inputs(**defaults) is True
    assert cls.validate_inputs(depth=None, N=None, start_percent=None, end_percent=None) is True
    problem = cls.validate_inputs(**{**defaults, **inputs})
    assert isinstance(problem, str) and needle in problem, problem
    params = __import__("inspect").signature(cls.validate_inputs).parameters
    assert not any(p.kind == p.VAR_KEYWORD for p in params.values())   # core keeps its checks on the rest


def test_loaders_say_why_their_list_is_empty(pack, tmp_path, monkeypatch):
    """Issue 20 item 8: with no file yet, a loader's combo holds a sentence (not an empty list the
    frontend draws as "undefined"), and validation refuses it with the same sentence."""
    import folder_paths
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "blockdance", ([str(tmp_path)], {".json", ".safetensors"}))
    ada = sys.modules[f"{PACK_MODULE}.nodes.ada_nodes"]
    schedules = sys.modules[f"{PACK_MODULE}.nodes.schedule_nodes"]
    for cls, empty in ((ada.BlockDanceAdaLoader, ada.NO_POLICY), (schedules.BlockDanceScheduleLoader, schedules.NO_SCHEDULE)):
        (combo,) = cls.define_schema().inputs   # the one input: validate_inputs(**inputs) checks it in full
        assert combo.options == [empty] and combo.tooltip
        assert empty in cls.validate_inputs(**{combo.id: empty}) and cls.validate_inputs(**{combo.id: None}) is True
