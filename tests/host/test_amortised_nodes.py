"""BlockDance Amortised Train and Amortised Schedule in real ComfyUI: a library measured on a few
settings gives another setting a schedule (no run of its own) that Patch follows at its budget."""
import os

import pytest
import torch

from helpers import node, sample_recorded


@pytest.fixture(scope="module")
def wan(tiny):
    return tiny.build("wan21", seed=0, config_overrides={"num_layers": 6}, batch_size=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import folder_paths
    path = str(tmp_path_factory.mktemp("blockdance_models"))
    previous = folder_paths.folder_names_and_paths.get("blockdance")
    folder_paths.folder_names_and_paths["blockdance"] = ([path], set())
    yield path
    if previous is None:
        folder_paths.folder_names_and_paths.pop("blockdance", None)
    else:
        folder_paths.folder_names_and_paths["blockdance"] = previous


@pytest.fixture(scope="module")
def trained(pack, wan, folder):
    return node(pack, "BlockDanceAmortisedTrain").execute(
        wan.patcher, wan.positive, wan.negative, wan.latent, 3, "8 euler simple 2; 14 dpmpp_2m normal 3",
        "tests/lib").result


def test_train_saves_a_library_the_schedule_node_reads(pack, wan, folder, trained):
    library, report = trained
    path = os.path.join(folder, "tests", "lib_00001.amortised.safetensors")
    assert os.path.isfile(path) and f"saved {path}" in report
    assert len(library.entries) == 2 and library.family == "wan" and library.num_blocks == 6
    by_name, _ = node(pack, "BlockDanceAmortisedSchedule").execute(
        wan.patcher, os.path.join("tests", "lib_00001.amortised.safetensors"), 11, 2.0, "euler", "karras", 2.0).result
    by_socket, report = node(pack, "BlockDanceAmortisedSchedule").execute(
        wan.patcher, "none yet: make one with BlockDance Amortised Train", 11, 2.0, "euler", "karras", 2.0,
        library=library).result
    assert by_name.steps == by_socket.steps and by_name.predicted_speedup >= 2.0
    assert "no calibration run" in report
    patched = node(pack, "BlockDancePatch").execute(wan.patcher, "blockdance", 0.75, 2, 0.4, 0.95,
                                                    schedule=by_name).result[0]
    out, record = sample_recorded(pack, patched, wan, steps=11, scheduler="karras")
    assert record.steps_reused == set(by_name.reuse_steps) and torch.isfinite(out).all()


def test_bad_settings_and_a_missing_library_are_clear_errors(pack, wan, folder):
    train = node(pack, "BlockDanceAmortisedTrain")
    assert "write `steps sampler scheduler cfg`" in train.validate_inputs(filename_prefix="x", settings="20 euler")
    assert "unknown sampler 'eulr'" in train.validate_inputs(filename_prefix="x", settings="20 eulr simple 2")
    assert "points outside" in train.validate_inputs(filename_prefix="../x", settings="20 euler simple 2")
    with pytest.raises(ValueError, match="no amortised library"):
        node(pack, "BlockDanceAmortisedSchedule").execute(
            wan.patcher, "none yet: make one with BlockDance Amortised Train", 11, 2.0, "euler", "karras", 2.0)
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, os.path.join(folder, "other.amortised.safetensors"), metadata={"format": "x"})
    with pytest.raises(Exception, match="not a BlockDance amortised library"):
        node(pack, "BlockDanceAmortisedSchedule").execute(
            wan.patcher, "other.amortised.safetensors", 11, 2.0, "euler", "karras", 2.0)
