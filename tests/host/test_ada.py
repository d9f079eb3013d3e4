"""BlockDance-Ada and the gate inside real ComfyUI: training in the graph, loading, refusing another
model, the mask in the log line."""
import os
import sys

import pytest
import torch

from helpers import LogCapture, node, sample_recorded


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
    with pytest.raises(errors.AdaError, match="trained for wan, 6 blocks, latent channels 16, conditioning width 4096; this model is sd3, 4 blocks"):
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


def test_training_resumes_exactly_from_its_train_state(pack, wan, tmp_path):
    """Stopped after 2 iterations and resumed to 3 (network and Adam moments from the safetensors
    train state, per-iteration seeds), training ends where 3 iterations in one go end."""
    training = sys.modules[f"{pack.__name__}.nodes.ada_training"]
    calibration = sys.modules[f"{pack.__name__}.nodes.calibration"]
    ada = sys.modules[f"{pack.__name__}.blockdance_core.ada"]

    def items():
        rows = wan.latent["samples"]
        return [training.Item(calibration.Sampling(wan.positive, wan.negative, {"samples": rows[i:i + 1]}, 5 + i, 6,
                                                   2.0, "euler", "simple")) for i in range(rows.shape[0])]

    # budgets between reachable speeds, so that masks above and below one earn different rewards (and
    # two of them, so the budget draws must resume too: with seed 4 iteration 3 draws other budgets
    # than iteration 1); no warm start: the untrained policy's masks vary, so the rewards and the
    # gradients do
    meta = ada.AdaMeta("wan", 6, int(wan.latent["samples"].shape[1]), int(wan.positive[0][0].shape[-1]), 0.0, 6,
                       "delta", 2.0, (1.8, 2.6))
    straight, _ = training.train(wan.patcher, items(), meta, 3, rollouts=2, seed=4, warm_start=False)
    state = str(tmp_path / "state.safetensors")
    first, _ = training.train(wan.patcher, items(), meta, 2, rollouts=2, seed=4, warm_start=False, state_path=state)
    resumed, log = training.train(wan.patcher, items(), meta, 3, rollouts=2, seed=4, warm_start=False,
                                  state_path=state)
    assert log.iterations == 3 and len(log.history) == 3 and log.rollouts == 3 * 2 * len(items())
    moved = [n for n, v in first.state_dict().items() if not torch.equal(v, resumed.state_dict()[n])]
    assert moved, "the resumed iteration did not train"
    for name, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[name], atol=1e-6), name


def test_rollouts_of_one_item_sample_different_masks_without_moving_the_sampling_noise(pack, wan):
    """Sampling reseeds torch's global generator from the item's seed, so masks drawn from it would be
    the same in every rollout (no advantage, no gradient); the policy draws from its own generator and
    leaves the global stream as it found it."""
    training = sys.modules[f"{pack.__name__}.nodes.ada_training"]
    calibration = sys.modules[f"{pack.__name__}.nodes.calibration"]
    ada = sys.modules[f"{pack.__name__}.blockdance_core.ada"]
    rows = wan.latent["samples"]
    item = training.Item(calibration.Sampling(wan.positive, wan.negative, {"samples": rows[:1]}, 5, 8, 2.0, "euler",
                                              "simple"))
    meta = ada.AdaMeta("wan", 6, int(rows.shape[1]), int(wan.positive[0][0].shape[-1]), 0.0, 6, "delta", 2.0, (2.0,))
    torch.manual_seed(0)
    net = ada.AdaNet(meta.latent_channels, meta.cond_width, meta.hidden)   # untrained: p near 0.5
    masks = torch.Generator().manual_seed(1)
    drawn = {tuple(training._rollout(wan.patcher, item, net, meta, 2.0, sample=True, masks=masks)[2].computes)
             for _ in range(6)}
    assert len(drawn) > 1, drawn
    # A sampling rollout (dropout and the Bernoulli mask drawn inside it) leaves the global random
    # stream where the unpatched model's sampling of the item leaves it.
    torch.manual_seed(123)
    item.sampling.run(wan.patcher)
    expected = torch.rand(3)
    torch.manual_seed(123)
    training._rollout(wan.patcher, item, net, meta, 2.0, sample=True, masks=masks)
    assert torch.equal(torch.rand(3), expected)


def test_the_reward_takes_a_pluggable_quality(pack, wan):
    """reward = compute term (at most 1) + lambda * quality(output, uncached reference)."""
    training = sys.modules[f"{pack.__name__}.nodes.ada_training"]
    calibration = sys.modules[f"{pack.__name__}.nodes.calibration"]
    ada = sys.modules[f"{pack.__name__}.blockdance_core.ada"]
    seen = []

    def quality(output, reference):
        seen.append((output.shape, reference.shape))
        return 0.25

    rows = wan.latent["samples"]
    items = [training.Item(calibration.Sampling(wan.positive, wan.negative, {"samples": rows[:1]}, 5, 6, 2.0, "euler",
                                                "simple"))]
    meta = ada.AdaMeta("wan", 6, int(rows.shape[1]), int(wan.positive[0][0].shape[-1]), 0.0, 6, "delta", 2.0, (2.0,))
    _, log = training.train(wan.patcher, items, meta, 2, rollouts=2, seed=3, warm_start=False, quality=quality)
    assert len(seen) == 4 and all(a == b == rows[:1].shape for a, b in seen)
    assert all(h["reward"] <= 1 + 2.0 * 0.25 + 1e-9 for h in log.history)


def test_bad_budgets_are_a_clear_error(pack, wan):
    with pytest.raises(ValueError, match="budgets='fast'"):
        node(pack, "BlockDanceAdaTrain").execute(
            wan.patcher, wan.positive, wan.negative, wan.latent, seed=5, steps=8, cfg=2.0, sampler_name="euler",
            scheduler="simple", budgets="fast", rho=0.0, iterations=1, rollouts=2, filename_prefix="x")
