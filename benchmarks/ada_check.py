"""Closed-loop Ada on the calibrated schedule against that static schedule, item by item (issue 19).

`python -m benchmarks.ada_check --model wan21|hunyuan_image21 --sampler euler|euler_ancestral
[--split all|held_out] [--targets 2 2.5 3] [--save PATH] [--json PATH] [--quick]`

- **Prior**: the shipped static schedule at each budget (benchmarks/reference/schedules), so Ada with a
  zero correction is that schedule (tests/core/test_ada_prior.py) and can only add where it leaves it.
- **Training** (blockdance_core/ada_prior_train.py): one probe run per training item; DAgger imitation of
  the search's optimum from every state the policy visits, ITERATIONS rounds, over the budgets that have a
  shipped schedule (TRAIN_BUDGETS: 1.25-3.5; 1.75 and 2.25 have none, so are never trained on).
- **Threshold**: the margin a correction must overcome to leave the prior is chosen on validation items by
  measured PSNR (capped at 59 dB) over MARGINS; a tie goes to the larger margin (fewer deviations), and
  "inf" (never leave the prior) is always a candidate, so a correction that does not help is switched off.
- **Evaluation**: every item sampled alone with its own noise and sampler seed; Ada and the static schedule
  at each target, paired per-item PSNR delta (capped at 59 dB, above it 8-bit images tie), bootstrap 95%
  interval, worst item, how many runs spent exactly the budget (same reuse steps and executed blocks as the
  static schedule) and the summed sampling seconds of each; when validation switched the correction off, the
  same with it kept on at the smallest margin tried (what following the imitation does); and a lockstep
  timing of 3 samples (uncached, static, Ada with its correction running: the policy's cost).
- **Splits**: `all`: train and validate on all 10 classes (calibration seeds), evaluate on all 10 with the
  evaluation seeds, 6 per class (60 items); `held_out`: train on classes 7-9, evaluate on 0-6 (21 items).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
import torch

from . import protocol
from .oracle_ceiling import Harness, Item, TIE_DB, bootstrap_ci, capped, noise_seed, sampler_seed

TRAIN_BUDGETS = (1.25, 1.5, 2.0, 2.5, 3.0, 3.5)
MARGINS = (0.1, 0.25, 0.5, 1.0, 2.0, math.inf)
ITERATIONS = 3
TIMING_SAMPLES = 3   # evaluation digits timed together in lockstep (policy cost included)
TIMING_ROUNDS = 3
SPLITS = {   # (train classes, train items per class, validation items per class, eval classes, eval items per class)
    "all": (tuple(range(10)), 2, 1, tuple(range(10)), 6),
    "held_out": (protocol.CALIBRATION_CLASSES, 5, 3, protocol.EVAL_CLASSES, 3),
}


def train_seed(cls: int, r: int) -> int:
    """Training and validation noise seeds: the calibration seed's range, never an evaluation seed."""
    return protocol.CALIBRATION_SEED * 10000 + 100 * cls + r


@dataclass
class Rollout:
    item: Item
    target: float


def make_items(h: Harness, classes, per_class: int, seed_of, offset: int = 0) -> List[Item]:
    items = []
    for c in classes:
        for r in range(offset, offset + per_class):
            it = Item(c, r, seed_of(c, r), seed_of(c, r) + 5000)
            it.noise = h.noise(it.noise_seed)
            items.append(it)
    return items


def run(pack, model, ref_model, contexts, sampler: str, split: str, targets: Sequence[float], quick: bool,
        log=print) -> dict:
    from .calibrate_reference import schedule_path
    core = pack.blockdance_core
    prior_mod, train = core.ada_prior, core.ada_prior_train
    Schedule = core.schedule.Schedule
    started = time.perf_counter()
    h = Harness(pack, model, ref_model, contexts, sampler, protocol.STEPS)
    train_classes, n_train, n_val, eval_classes, n_eval = SPLITS[split]
    if quick:
        train_classes, n_train, n_val, eval_classes, n_eval = train_classes[:2], 1, 1, eval_classes[:2], 1
    priors = {b: Schedule.load(schedule_path(ref_model.name, sampler, b))
              for b in sorted(set(TRAIN_BUDGETS[1:4] if quick else TRAIN_BUDGETS) | set(targets))}
    start, cut, mode = prior_mod.single_range(priors[targets[0]])
    # the policy follows one range: a shipped schedule that mixes cuts (e.g. 3.5x) is not a prior for it
    budgets = [b for b, p in priors.items() if list(p.ranges) == [(start, cut, mode)] and not p.forecasts]
    skipped = sorted(set(priors) - set(budgets))
    if set(targets) & set(skipped):
        raise SystemExit(f"the shipped schedules at {sorted(set(targets) & set(skipped))}x reuse with several ranges; "
                         "the closed-loop policy needs one")
    log(f"budgets trained: {budgets}" + (f" (the schedules at {skipped} mix ranges: left out)" if skipped else ""))

    training = make_items(h, train_classes, n_train, train_seed)
    validation = make_items(h, train_classes, n_val, train_seed, offset=n_train)
    for it in training:   # one probe per training item: its reference output and its errors
        it.reference, it.measurement = h.probe(it.cls, it.noise, it.sampler_seed)
        it.errors = train.expert_errors(it.measurement, start, cut, mode)
    log(f"probed {len(training)} training items ({time.perf_counter() - started:.0f} s)")
    rollouts = [Rollout(it, b) for it in training for b in budgets]
    scales = {}
    for r in rollouts:   # the static prior's own predicted cost on the item: the advantage's unit
        scales[id(r)] = max(core.search.predicted_error(r.item.measurement, core.schedule.place(
            priors[r.target], r.item.measurement.timeline)), 1e-9)

    def rollout(correction, r: Rollout):
        policy = prior_mod.PriorPolicy(priors[r.target], correction, trace=True)
        return h.run_policy(policy, r.item)[3].result

    correction, info = train.dagger(rollouts, rollout, lambda r: r.item.errors, lambda r: scales[id(r)],
                                    iterations=1 if quick else ITERATIONS, log=log)
    log(f"trained ({time.perf_counter() - started:.0f} s)")

    def evaluate(items: List[Item], margin: float, t: float):
        """(image PSNR, ideal speedup, record, seconds) per item; inf margin: the prior itself."""
        out = []
        for it in items:
            policy = prior_mod.PriorPolicy(priors[t], correction, margin=margin)
            t0 = time.perf_counter()
            image, _, ideal, record = h.run_policy(policy, it)
            out.append((image, ideal, record, time.perf_counter() - t0))
        return out

    for it in validation:
        it.reference = h.sample(model, it.cls, it.noise, it.sampler_seed)
    margins = (1.0, math.inf) if quick else MARGINS
    fitted = {}
    for m in margins:
        fitted[m] = float(np.mean([capped([r[0] for r in evaluate(validation, m, t)]).mean() for t in targets]))
    margin = max(margins, key=lambda m: (round(fitted[m], 6), m))
    log(f"validation PSNR by margin: {', '.join(f'{m:g}: {v:.2f}' for m, v in fitted.items())} -> margin {margin:g}")

    items = make_items(h, eval_classes, n_eval, noise_seed)
    for it in items:
        it.sampler_seed = sampler_seed(it.cls, it.r)
        it.reference = h.sample(model, it.cls, it.noise, it.sampler_seed)
    # the shipped policy (fitted margin) and, when validation switched it off, the correction kept on at the
    # smallest margin tried (it leaves the prior most): what following the imitation would have done
    on_margin = margin if not math.isinf(margin) else min(margins)
    summary, summary_on, per_item = {}, {}, []
    for t in targets:
        static = evaluate(items, math.inf, t)
        on = evaluate(items, on_margin, t)
        ada = on if not math.isinf(margin) else static
        summary[f"{t:g}"] = paired(ada, static)
        summary_on[f"{t:g}"] = paired(on, static)
        per_item.append({f"{t:g}": {"static": [r[0] for r in static], "ada": [r[0] for r in ada],
                                    "on": [r[0] for r in on]}})
        for name, row in (("Ada", summary[f"{t:g}"]), (f"correction on (margin {on_margin:g})", summary_on[f"{t:g}"])):
            log(f"{t:g}x: static {row['static_psnr']:.2f} dB, {name} {row['ada_psnr']:.2f} dB, delta "
                f"{row['delta_mean']:+.2f} [{row['delta_ci95'][0]:+.2f}, {row['delta_ci95'][1]:+.2f}], worst "
                f"{row['delta_worst']:+.2f}, left the prior in {row['flipped_runs']} runs, budget exact {row['budget_exact']}")
    timing = lockstep_cost(pack, model, ref_model, contexts, sampler, priors[targets[0]], correction,
                           1.0 if math.isinf(margin) else margin, 1 if quick else TIMING_ROUNDS)
    log(f"lockstep, {TIMING_SAMPLES} samples, {targets[0]:g}x: static {timing['static_speedup']:.3f}x, Ada (correction "
        f"on) {timing['ada_speedup']:.3f}x: the policy costs {timing['policy_cost']:+.1%} of the static run's time")
    return {"model": ref_model.name, "label": ref_model.label, "sampler": sampler, "split": split, "timing": timing,
            "targets": list(targets), "train_budgets": budgets, "range": [start, cut, mode],
            "items": {"train": len(training), "validation": len(validation), "eval": len(items)},
            "training": info, "margin": None if math.isinf(margin) else margin,
            "validation_psnr": {f"{m:g}": v for m, v in fitted.items()}, "tie_db": TIE_DB, "summary": summary,
            "on_margin": on_margin, "summary_on": summary_on,
            "per_item": per_item, "runs": h.runs, "seconds": round(time.perf_counter() - started, 1),
            "correction": correction, "quick": quick}


def paired(runs: list, static: list) -> dict:
    """Per-item PSNR of a policy against the static schedule on the same items: paired delta (capped at
    TIE_DB), its bootstrap interval, worst and best item, runs that left the prior, runs on budget."""
    a, s = np.array([r[0] for r in runs]), np.array([r[0] for r in static])
    delta = capped(a) - capped(s)
    exact = sum(1 for x, y in zip(runs, static) if x[2].block_calls_skipped == y[2].block_calls_skipped
                and len(set(x[2].extra.get("budget", "?/!").split("/"))) == 1)
    return {"static_psnr": float(s.mean()), "ada_psnr": float(a.mean()), "delta_mean": float(delta.mean()),
            "delta_ci95": bootstrap_ci(delta), "delta_worst": float(delta.min()), "delta_best": float(delta.max()),
            "flipped_runs": sum(1 for r in runs if r[2].extra.get("flips", 0)), "budget_exact": f"{exact}/{len(runs)}",
            "ideal": float(np.mean([r[1] for r in static])),
            "seconds_static": round(sum(r[3] for r in static), 2), "seconds_ada": round(sum(r[3] for r in runs), 2)}


def lockstep_cost(pack, model, ref_model, contexts, sampler: str, prior, correction, margin: float,
                  rounds: int) -> dict:
    """Speedup over uncached of the static schedule and of Ada with its correction running (whatever
    the fitted margin), TIMING_SAMPLES evaluation digits as one batch, timed in lockstep rounds."""
    from .configs import Config, make_workload, time_in_lockstep
    core, patcher = pack.blockdance_core, pack.nodes.patcher
    labels = torch.tensor(protocol.EVAL_CLASSES[:TIMING_SAMPLES])
    work = make_workload(ref_model, model, contexts, labels, protocol.EVAL_SEED)
    ada = core.ada_prior.PriorPolicy(prior, correction, margin=margin)
    configs = [Config("baseline", {}, protocol.STEPS, model.clone()),
               Config("static", {}, protocol.STEPS, patcher.apply_blockdance(model, core.schedule.SchedulePolicy(prior),
                                                                            "schedule")),
               Config("ada", {}, protocol.STEPS, patcher.apply_blockdance(model, ada, "ada_prior"))]
    time_in_lockstep(configs, sampler, work, protocol.EVAL_SEED, rounds, model.get_model_object("diffusion_model"),
                     ref_model.block_containers)
    base = configs[0].clean_seconds
    static, with_policy = configs[1].clean_seconds, configs[2].clean_seconds
    return {"samples": TIMING_SAMPLES, "rounds": rounds, "target": prior.target_speedup,
            "static_speedup": base / static, "ada_speedup": base / with_policy,
            "policy_cost": with_policy / static - 1.0,
            "ideal_static": configs[0].timed_block_calls / configs[1].timed_block_calls,
            "ideal_ada": configs[0].timed_block_calls / configs[2].timed_block_calls}


def markdown(results: List[dict]) -> str:
    """Ada-vs-static rows: model, sampler, split, target, static, Ada, paired delta [95%], worst, budget exact."""
    out = ["| model · sampler · split | target | static dB | Ada dB | Δ [95% CI] | worst | left the prior | budget exact |",
           "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for t, row in r["summary"].items():
            lo, hi = row["delta_ci95"]
            out.append(f"| {r['label']} · {r['sampler']} · {r['split']} | {t}x | {row['static_psnr']:.1f} | "
                       f"{row['ada_psnr']:.1f} | {row['delta_mean']:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
                       f"{row['delta_worst']:+.2f} | {row['flipped_runs']} runs | {row['budget_exact']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    from .reference import models
    from .run import load_reference
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--sampler", default="euler", choices=protocol.SAMPLERS)
    parser.add_argument("--split", default="all", choices=sorted(SPLITS))
    parser.add_argument("--targets", type=float, nargs="+", default=[2.0, 2.5, 3.0])
    parser.add_argument("--save", default=None, help="write the trained correction (safetensors) here")
    parser.add_argument("--json", default=None, help="default out/ada/ada_<model>_<sampler>_<split>.json")
    parser.add_argument("--markdown", nargs="+", default=None, help="print the table of saved JSON results")
    parser.add_argument("--quick", action="store_true", help="2 classes, 1 item each, one DAgger round (a test)")
    args = parser.parse_args(argv)
    if args.markdown:
        results = []
        for path in args.markdown:
            with open(path) as f:
                results.append(json.load(f))
        print(markdown(results))
        return 0
    if not set(args.targets) <= set(TRAIN_BUDGETS):
        raise SystemExit(f"--targets {args.targets}: each needs a shipped schedule, one of {TRAIN_BUDGETS}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pack, model, contexts = load_reference(models.get(args.model))
    result = run(pack, model, models.get(args.model), contexts, args.sampler, args.split, args.targets, args.quick)
    correction = result.pop("correction")
    if args.save:
        pack.blockdance_core.ada_prior_train.save(args.save, correction, result["margin"] or math.inf, {
            "model": args.model, "sampler": args.sampler, "split": args.split, "budgets": result["train_budgets"],
            "validation_psnr": result["validation_psnr"], "items": result["items"]})
        print(f"wrote {args.save}")
    path = args.json or os.path.join("out", "ada", f"ada_{args.model}_{args.sampler}_{args.split}.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(markdown([result]))
    print(f"wrote {path} ({result['runs']} sampling runs, {result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
