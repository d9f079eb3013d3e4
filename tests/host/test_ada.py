"""BlockDance-Ada and the gate inside real ComfyUI: training in the graph, loading, refusing another
model, the mask in the log line."""
import os
import sys

import pytest
import torch

from helpers import LogCapture, node, sample, sample_recorded


@pytest.fixture(scope="module")
def wan(tiny):
    return tiny.build("wan21", seed=0, config_overrides={"num_layers": 6}, batch_size=2)


@pytest.fixture(scope="module")
def trained(pack, wan, tmp_path_factory):
    import folder_paths
    folder = str(tmp_path_factory.mktemp("blockdance_models"))
    previous = folder_paths.folder_names_and_paths.get("blockdance")
    folder_paths.folder_names_and_paths["blockdance"] = ([folder], set())
    try:
        policy, report = node(pack, "BlockDanceAdaTrain").execute(
            wan.patcher, wan.positive, wan.negative, wan.latent, seed=5, steps=8, cfg=2.0, sampler_name="euler",
            scheduler="simple", budgets="1.5, 2.0", rho=0.0, iterations=2, rollouts=2,
            filename_prefix="tests/ada").result
        yield policy, report, folder
    finally:
        if previous is None:
            folder_paths.folder_names_and_paths.pop("blockdance", None)
        else:
            folder_paths.folder_names_and_paths["blockdance"] = previous


def patched(pack, model, policy, target=2.0):
    return node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95, policy=policy,
                                                 target_speedup=target).result[0]


def test_train_node_saves_a_policy_the_loader_reads(pack, trained):
    policy, report, folder = trained
    path = os.path.join(folder, "tests", "ada_00001.safetensors")
    assert os.path.isfile(path) and f"saved {path}" in report and "2 items, 8 rollouts" in report
    assert policy.meta.family == "wan" and policy.meta.num_blocks == 6 and policy.meta.budgets == (1.5, 2.0)
    assert policy.meta.training["rollouts"] == 8 and policy.meta.training["iterations"] == 2
    import folder_paths
    folder_paths.folder_names_and_paths["blockdance"] = ([folder], set())
    (loaded,) = node(pack, "BlockDanceAdaLoader").execute(os.path.join("tests", "ada_00001.safetensors")).result
    assert loaded.meta == policy.meta and loaded.name == "ada_00001"
    assert all(torch.equal(a, b) for a, b in zip(loaded.net.state_dict().values(), policy.net.state_dict().values()))


def test_the_mask_is_in_the_log_line_and_the_record(pack, wan, trained):
    policy, _, _ = trained
    log = LogCapture()
    try:
        out, record = sample_recorded(pack, patched(pack, wan.patcher, policy), wan, steps=8)
    finally:
        log.close()
    (run,) = log.runs()
    mask = record.extra["mask"]
    assert run["policy"] == policy.name and run["mask"] == mask and len(mask) == 7   # steps 1..7, rho = 0
    reused = {1 + i for i, c in enumerate(mask) if c == "R"}
    assert record.steps_reused == reused and torch.isfinite(out).all()


def test_a_policy_for_another_model_is_refused(pack, tiny, trained):
    policy, _, _ = trained
    sd3 = tiny.build("sd3", seed=0)
    errors = sys.modules[f"{pack.__name__}.blockdance_core.ada"]
    with pytest.raises(errors.AdaError, match="trained for wan with 6 blocks; this model is sd3 with 4 blocks"):
        patched(pack, sd3.patcher, policy)


def test_trains_inside_inference_mode_as_the_server_runs_nodes(pack, wan, tmp_path):
    """ComfyUI executes every node under torch.inference_mode(); training must still learn there
    (the network moves off its warm start) and the trained policy must still decide under it."""
    import folder_paths
    previous = folder_paths.folder_names_and_paths.get("blockdance")
    folder_paths.folder_names_and_paths["blockdance"] = ([str(tmp_path)], set())
    try:
        with torch.inference_mode():
            latent = {"samples": torch.zeros_like(wan.latent["samples"])}
            policy, report = node(pack, "BlockDanceAdaTrain").execute(
                wan.patcher, wan.positive, wan.negative, latent, seed=5, steps=8, cfg=2.0, sampler_name="euler",
                scheduler="simple", budgets="2.0", rho=0.0, iterations=2, rollouts=2, filename_prefix="inf").result
            out, record = sample_recorded(pack, patched(pack, wan.patcher, policy), wan, steps=8)
    finally:
        if previous is None:
            folder_paths.folder_names_and_paths.pop("blockdance", None)
        else:
            folder_paths.folder_names_and_paths["blockdance"] = previous
    assert "2 items, 8 rollouts" in report and torch.isfinite(out).all()
    assert not any(t.is_inference() for t in policy.net.parameters())
    ada = sys.modules[f"{pack.__name__}.blockdance_core.ada"]
    torch.manual_seed(5)   # train() seeds the network's initialisation with its seed
    start = ada.AdaNet(policy.meta.latent_channels, policy.meta.cond_width, policy.meta.hidden)
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), policy.net.state_dict().values()))
    assert record.extra["mask"] and record.steps_reused


def test_bad_budgets_are_a_clear_error(pack, wan):
    with pytest.raises(ValueError, match="budgets='fast'"):
        node(pack, "BlockDanceAdaTrain").execute(
            wan.patcher, wan.positive, wan.negative, wan.latent, seed=5, steps=8, cfg=2.0, sampler_name="euler",
            scheduler="simple", budgets="fast", rho=0.0, iterations=1, rollouts=2, filename_prefix="x")
