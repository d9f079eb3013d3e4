"""Per-instance methods against the calibrated static schedule, one evaluation sample at a time.

BlockDance-Ada (the shipped policy of the model and sampler) and the gate decide per sample, and the
engine decides one action per step for a whole batch, so these rows sample every evaluation digit on
its own (batch 1), beside the static calibrated schedule and the uncached model run the same way.
Per row: PSNR (mean and worst) against the uncached output of the same sample, the ideal speedup
averaged over the samples with its spread (Ada's and the gate's plans differ per sample), and the
measured speedup of one sample (the first) timed in lockstep rounds like the batched rows.

The gate's threshold for each target is fitted on calibration digits (benchmarks/protocol.py), never
on the evaluation ones.
"""
from __future__ import annotations

import os
import statistics
from typing import List

import torch

from . import protocol
from .calibrate_reference import schedule_path
from .configs import Config, Workload, evaluate, sample, time_in_lockstep
from .measure import node, record_of, recorded_runs
from .train_ada import policy_path


def _patched(pack, model, **inputs):
    return node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95, **inputs).result[0]


def fit_gate(pack, model, ref_model, contexts, sampler, steps, target, cut, mode) -> float:
    """The smallest gate threshold whose mean ideal speedup over calibration digits (one per class,
    each sampled alone) reaches `target`."""
    import comfy.sample
    null = ref_model.null_class
    items = []
    for c in protocol.CALIBRATION_CLASSES:
        latent = comfy.sample.fix_empty_latent_channels(model, ref_model.empty_latent(1))
        items.append(Workload(comfy.sample.prepare_noise(latent, protocol.CALIBRATION_SEED + c), latent,
                              [[contexts[c:c + 1], {}]], [[contexts[null:null + 1], {}]]))
    Gate = pack.blockdance_core.gate.GatePolicy
    depth = cut / ref_model.num_blocks

    def speedup_at(threshold: float) -> float:
        patched = pack.nodes.patcher.apply_blockdance(model, Gate(threshold, depth, mode), mode)
        ideals = []
        for work in items:
            with recorded_runs(pack) as reports:
                sample(Config("gate", {}, steps, patched), work, sampler, protocol.CALIBRATION_SEED)
            ideals.append(record_of(reports, patched).ideal_speedup)
        return sum(ideals) / len(ideals)

    threshold, _ = pack.blockdance_core.gate.fit_threshold(speedup_at, target, iterations=8)
    return threshold


def per_instance_rows(pack, model, ref_model, contexts, sampler: str, steps: int, quick: bool, labels, fidelity,
                      seed: int, repeats: int, classifier, real_features) -> List[dict]:
    items = [Workload(fidelity.noise[i:i + 1], fidelity.latent[i:i + 1], [[fidelity.positive[0][0][i:i + 1], {}]],
                      fidelity.negative) for i in range(len(labels))]
    policy = None
    path = policy_path(ref_model.name, sampler)
    if os.path.isfile(path):
        net, meta = pack.blockdance_core.ada.load(path)
        policy = pack.nodes.ada_nodes.LoadedPolicy(net, meta, os.path.splitext(os.path.basename(path))[0])
    cut, mode = (policy.meta.cut, policy.meta.mode) if policy else (ref_model.num_blocks, "delta")
    configs = [Config("baseline", {"per_sample": True}, steps, model)]
    Schedule = pack.blockdance_core.schedule.Schedule
    for target in ((2.0,) if quick else protocol.TARGETS):
        schedule = Schedule.load(schedule_path(ref_model.name, sampler, target))
        configs.append(Config("calibrated", {"target_speedup": target, "per_sample": True}, steps,
                              _patched(pack, model, schedule=schedule)))
        if policy is not None:
            configs.append(Config("ada", {"target_speedup": target}, steps,
                                  _patched(pack, model, policy=policy, target_speedup=target)))
        threshold = fit_gate(pack, model, ref_model, contexts, sampler, steps, target, cut, mode)
        gate = pack.blockdance_core.gate.GatePolicy(threshold, cut / ref_model.num_blocks, mode)
        configs.append(Config("gate", {"target_speedup": target, "threshold": round(threshold, 5)}, steps,
                              pack.nodes.patcher.apply_blockdance(model, gate, mode)))
    ideals, plan_ms = {}, {}
    for cfg in configs:
        outputs, ideals[id(cfg)], plan_ms[id(cfg)] = [], [], []
        for work in items:
            with recorded_runs(pack) as reports:
                outputs.append(sample(cfg, work, sampler, seed))
            record = record_of(reports, cfg.patched) if reports else None
            ideals[id(cfg)].append(record.ideal_speedup if record else 1.0)
            if record is not None and "plan_ms" in record.extra:
                plan_ms[id(cfg)].append(float(record.extra["plan_ms"]))
        cfg.output = torch.cat(outputs)
        cfg.block_calls = 1   # evaluate() reads it; the per-sample ideal speedups replace what it derives
    base = configs[0]
    base.copies = [Config("baseline", {"copy": i}, steps, model.clone()) for i in range(1, 3)]
    dm = model.get_model_object("diffusion_model")
    time_in_lockstep(configs + base.copies, sampler, items[0], seed, repeats, dm, ref_model.block_containers)
    rows = evaluate(configs, ref_model, sampler, labels, classifier, real_features)
    for row, cfg in zip(rows, configs):
        values = ideals[id(cfg)]
        row.update(ideal_speedup=round(statistics.mean(values), 4), ideal_min=round(min(values), 4),
                   ideal_max=round(max(values), 4), per_sample=True)
        row["efficiency"] = round(row["speedup"] / values[0], 4)   # measured on the first sample, against its ideal
        row["ideal_speedup_fidelity"] = row["ideal_speedup"]
        if plan_ms[id(cfg)]:   # the policy's cost: its decision time against a whole run of one sample
            row["policy_ms"] = round(statistics.mean(plan_ms[id(cfg)]), 3)
            row["policy_share"] = round(row["policy_ms"] / 1000 / row["seconds"], 5)
    return rows
