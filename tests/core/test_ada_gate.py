import pytest
import torch

from blockdance_core import PatchSpec
from blockdance_core.policy import ModelFingerprint
from blockdance_core.ada import AdaError, AdaMeta, AdaNet, AdaPolicy, latent_features, load, read_bins, save
from blockdance_core.gate import GatePolicy, fit_threshold

from test_engine import sample
from toy_dit import ToyDiT


def meta(**kw):
    base = dict(family="toy", num_blocks=6, latent_channels=6, cond_width=8, rho=0.0, cut=6, mode="delta",
                lam=2.0, budgets=(1.5, 2.0))
    return AdaMeta(**{**base, **kw})


def net_saying(computes, m=None):
    """A network whose plan is `computes` (True/False everywhere, or a per-bin list of logits)."""
    m = m or meta()
    net = AdaNet(m.latent_channels, m.cond_width)
    with torch.no_grad():
        net.plan[-1].weight.zero_()
        values = computes if isinstance(computes, list) else [5.0 if computes else -5.0] * 32
        net.plan[-1].bias.copy_(torch.tensor(values))
    return net


@pytest.mark.parametrize("decode, target", [("threshold", 2.0), ("budget", 1.0)])
def test_an_all_compute_policy_is_bit_identical(decode, target):
    model = ToyDiT(0, 6)
    base, _ = sample(model)
    out, record = sample(model, PatchSpec(AdaPolicy(net_saying(True), meta(), target, decode=decode), 6))
    assert torch.equal(out, base) and not record.steps_reused
    assert record.extra["mask"] == "C" * 11 and record.extra["rho"] == 1


@pytest.mark.parametrize("rho, first_reuse", [(0.0, 1), (0.4, 5)])
def test_an_all_reuse_policy_reuses_from_rho(rho, first_reuse):
    model = ToyDiT(0, 6)
    _, record = sample(model, PatchSpec(AdaPolicy(net_saying(False), meta(rho=rho), 2.0, decode="threshold"), 6))
    assert record.steps_reused == set(range(first_reuse, 12))
    assert record.steps[first_reuse - 1].done == "cache"
    assert record.block_calls_skipped == 6 * (12 - first_reuse)


def test_sampling_mode_keeps_the_log_probability_for_reinforce():
    model = ToyDiT(0, 6)
    policy = AdaPolicy(AdaNet(6, 8), meta(), 1.5, sample=True)
    _, record = sample(model, PatchSpec(policy, 6))
    run = record.result
    assert run.log_prob.requires_grad and len(run.computes) == 11
    run.log_prob.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.net.parameters())


def test_budget_decoding_reuses_the_least_needed_steps_as_many_as_the_target_needs():
    """12 steps x 6 blocks, target 1.5x: 24 block executions to save = 4 full-stack reuse steps,
    the 4 steps whose bins say 'compute' least."""
    model = ToyDiT(0, 6)
    logits = [float(b % 8) for b in range(32)]   # lowest at the start of every quarter of the timeline
    _, record = sample(model, PatchSpec(AdaPolicy(net_saying(logits), meta(), 1.5), 6))
    assert record.block_calls_skipped == 24 and record.ideal_speedup == pytest.approx(1.5)
    assert record.steps_reused == {3, 6, 9, 1}


def test_features_and_bins_are_family_agnostic():
    assert latent_features(torch.randn(2, 16, 1, 8, 8)).shape == (2, 48)   # Wan video latent
    assert latent_features(torch.randn(3, 64, 4, 4)).shape == (3, 144)     # HunyuanImage 2.1
    assert read_bins(torch.arange(4.0), [0.0, 0.3, 0.5, 0.99]).tolist() == [0, 1, 2, 3]


def test_checkpoint_round_trip_and_refusals(tmp_path):
    net, m = AdaNet(6, 8), meta()
    path = str(tmp_path / "p.safetensors")
    save(path, net, m)
    loaded, m2 = load(path)
    assert m2 == m and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    policy = AdaPolicy(loaded, m2, 2.0, label="p")
    with pytest.raises(AdaError, match="trained for toy, 6 blocks, latent channels 6, conditioning width 8; this "
                                       "model is flux, 57 blocks"):
        policy.check_model(ModelFingerprint("flux", 57))
    with pytest.raises(AdaError, match="this model is toy, 6 blocks, width 32, latent channels 16, conditioning "
                                       "width 8"):
        policy.check_model(ModelFingerprint("toy", 6, 32, 16, 8))
    with pytest.raises(AdaError, match="conditioning width 4096"):
        policy.check_model(ModelFingerprint("toy", 6, 32, 6, 4096))
    policy.check_model(ModelFingerprint("toy", 6, 32, 6, 8))
    policy.check_model(ModelFingerprint("toy", 6))   # what the model does not say is not checked
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(AdaError, match="cannot be read as a safetensors policy"):
        load(str(bad))
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(bad))
    with pytest.raises(AdaError, match="not a BlockDance-Ada policy"):
        load(str(bad))


def test_gate_reuses_while_the_input_barely_moves():
    model = ToyDiT(0, 6)
    base, _ = sample(model)
    never, r0 = sample(model, PatchSpec(GatePolicy(threshold=0.0, depth=1.0), 6))
    assert torch.equal(never, base) and not r0.steps_reused
    _, r_all = sample(model, PatchSpec(GatePolicy(threshold=1e9, depth=1.0, max_reuse=3), 6))
    assert r_all.steps_reused == {1, 2, 3, 5, 6, 7, 9, 10, 11}   # groups of one cache step and 3 reuses


def test_fit_threshold_reaches_the_target():
    speedup = lambda th: 1 + 4 * min(th, 1.0)          # monotone
    threshold, reached = fit_threshold(speedup, 3.0)
    assert reached >= 3.0 and threshold == pytest.approx(0.5, abs=1e-3)
