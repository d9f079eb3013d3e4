"""Training the closed-loop correction: the expert's values match the search, DAgger labels the states
the policy visits, a fitted correction follows the expert, and checkpoints load only when sound."""
import json

import numpy as np
import pytest
import torch

from blockdance_core import PatchSpec
from blockdance_core.ada_prior import Correction, PriorError, PriorPolicy
from blockdance_core.ada_prior_train import (Labelled, continuation_values, dagger, expert_errors, fit, load,
                                             save)
from blockdance_core.probe import ProbePolicy, candidate_cuts
from blockdance_core.schedule import Schedule
from blockdance_core.search import search

from test_engine import sample
from toy_dit import ToyDiT

OPTION = (6, "delta")


def measured(seed=0):
    model = ToyDiT(seed, 6)
    _, record = sample(model, PatchSpec(ProbePolicy(candidate_cuts(model.num_blocks)), model.num_blocks))
    return model, record.result.measurement()


@pytest.mark.parametrize("target", [1.5, 2.0, 3.0])
def test_the_expert_optimum_from_the_start_is_the_searched_plan(target):
    _, m = measured()
    plan = search(m, target, [OPTION])
    reuses = sum(len(g.reuse_steps) for g in plan.groups)
    V = continuation_values(expert_errors(m, 0, *OPTION))
    assert V[0, m.num_steps, reuses] == pytest.approx(plan.predicted_error, rel=1e-6)
    assert np.isinf(V[0, m.num_steps, m.num_steps])   # step 0 has nothing to reuse


def rollout_fn(model, schedule, policy_kw=None):
    def rollout(correction, item):
        policy = PriorPolicy(schedule, correction, trace=True, **(policy_kw or {}))
        _, record = sample(model, PatchSpec(policy, 6))
        return record.result
    return rollout


def test_dagger_labels_visited_states_and_the_fit_follows_the_expert():
    model, m = measured()
    plan = search(m, 2.0, [OPTION])
    schedule = Schedule.from_plan("toy", "toy", m.width, m.timeline, plan)
    errors = expert_errors(m, 0, *OPTION)
    visits = rollout_fn(model, schedule)(Correction(), None)
    assert visits and all(v.source is not None and v.source < v.step for v in visits)
    data = Labelled()
    data.add(visits, errors, scale=plan.predicted_error)
    # on its own measurement the prior is the optimum: the expert agrees with it wherever it matters
    assert all((a > 0) == (p > 0) for a, p in zip(data.advantage, data.prior) if abs(a) > 1e-9)
    # a disagreeing expert: flip every label; the fitted correction must overturn the prior's margin
    flipped = Labelled(list(data.signals), list(data.prior), [-a if a else -p for a, p in zip(data.advantage, data.prior)])
    net = Correction()
    fit(net, flipped, margin=1.0, epochs=400, l2=0.0)
    with torch.no_grad():
        scores = torch.tensor(flipped.prior) + net(torch.stack(flipped.signals))
    assert float(((scores > 0) == (torch.tensor(flipped.advantage) > 0)).float().mean()) > 0.8
    correction, info = dagger([None], rollout_fn(model, schedule), lambda _: errors, lambda _: plan.predicted_error,
                              iterations=2)
    assert [h["iteration"] for h in info["iterations"]] == [0, 1] and info["iterations"][1]["states"] > len(visits) - 1


def test_checkpoints_round_trip_and_refuse_what_is_not_a_correction(tmp_path):
    net = Correction(8)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    path = str(tmp_path / "c.safetensors")
    save(path, net, 2.5, {"model": "toy"})
    loaded, margin, info = load(path)
    x = torch.randn(5, len(net.net[0].weight[0]))
    assert torch.equal(loaded(x), net(x)) and margin == 2.5 and info == {"model": "toy"}
    from safetensors.torch import save_file
    bad = str(tmp_path / "bad.safetensors")
    save_file({"w": torch.zeros(2)}, bad, metadata={"format": "something else"})
    with pytest.raises(PriorError, match="not a closed-loop"):
        load(bad)
    meta = {"signals": ["drift"], "hidden": 8, "margin": 1.0, "info": {}}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, bad,
              metadata={"format": "blockdance-ada-prior", "meta": json.dumps(meta)})
    with pytest.raises(PriorError, match="signals"):
        load(bad)
    meta = {"signals": list(__import__("blockdance_core.ada_prior", fromlist=["SIGNALS"]).SIGNALS), "hidden": 9,
            "margin": 1.0, "info": {}}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, bad,
              metadata={"format": "blockdance-ada-prior", "meta": json.dumps(meta)})
    with pytest.raises(PriorError, match="do not match"):
        load(bad)
    with open(bad, "wb") as f:
        f.write(b"\x80\x04 not safetensors")
    with pytest.raises(PriorError, match="cannot be read"):
        load(bad)
