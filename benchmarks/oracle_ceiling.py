"""How much could a per-instance schedule gain over the shipped static one? The oracle ceiling (issue 19, item 1).

`python -m benchmarks.oracle_ceiling [--model wan21|hunyuan_image21] [--sampler euler|euler_ancestral]
[--targets 2 2.5 3] [--items-per-class 3] [--quick] [--json PATH]` samples every evaluation item on its own
(batch 1) with its OWN noise seed and its OWN sampler seed, and compares, per item and target speedup:

- shipped:     the shipped static schedule (benchmarks/reference/schedules/<model>_<sampler>_<target>x.json,
               Schedule.load, calibrated on classes 7-9 with the calibration seed);
- hindsight:   the best static schedule in hindsight: one exact search (blockdance_core.search.search) on
               the pooled probe measurement of all evaluation items (each probed with its own seeds);
- own:         each item's own searched plan (probe of that item alone, then search);
- class:       a class oracle: one plan per class, searched on the pooled probes of OTHER seeds of that
               class (noise and sampler seeds that no evaluation item uses);
- nonclair:    euler_ancestral only, a non-clairvoyant per-item oracle: planned from probes of the item's
               own start noise under OTHER sampler seeds, so it cannot see the noise the ancestral sampler
               will inject in the evaluated run;
- best:        the best measured of the per-item candidates at that target: max of the measured PSNR over
               the rows above and the item's own plans at higher targets of the allocation grid (every one
               of them meets the target); it includes `shipped`, so it is >= shipped per item;
- allocation:  reuse counts vary per item at the same mean budget: per item one of its own plans on the
               allocation grid (targets around the mean), chosen greedily to maximise the sum of measured
               (59 dB capped, raw PSNR / 1000 added to break ties) PSNR subject to the pooled compute (block executions of all items together)
               not exceeding the target's: the pooled ideal speedup of the items is >= the target. The
               all-at-the-target allocation (= own) is feasible, so the better of it and the greedy one counts.

Fidelity: PSNR of the decoded digit (benchmarks/metrics.py psnr_per_image, range [-1, 1]) against the same
item's uncached output (same noise and sampler seed; the probe run computes every block, so its output is the
uncached output and serves as the reference). Latent PSNR (blockdance_core.quality.latent_psnr) is kept in
the JSON too. Above about 59 dB 8-bit images cannot tell two outputs apart, so the deltas, the worst delta and
the share within 1 dB of the item's own best are computed on PSNR capped at 59 dB (ties); the mean PSNR
column is raw. Deltas are paired per item against `shipped`; 95% intervals are percentile bootstraps of the
mean over items (numpy default_rng(0), 2000 resamples).

Seeds (benchmarks/protocol.py: evaluation classes 0-6 only, never the calibration classes 7-9 or seed 101):
item r of class c has noise seed EVAL_SEED * 10000 + 100 * c + r and sampler seed noise seed + 5000;
the class oracle's probes use r = 50, 51, ... (never an evaluation item: at most 50 items per class); the
non-clairvoyant oracle's probes use the item's noise seed with sampler seeds noise seed + 5000 + 1000 * j,
j = 1, 2, ...

`--markdown JSON...` prints the markdown tables and verdicts of saved results (docs/oracle.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np
import torch

from . import protocol

TIE_DB = 59.0            # above this, 8-bit images cannot tell outputs apart
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
MAX_PER_CLASS = 50       # evaluation items per class stay below the class oracle's seeds
CLASS_OTHER_SEEDS = 2    # probes per class for the class oracle
NONCLAIR_SEEDS = 2       # other sampler seeds per item for the non-clairvoyant oracle
ALLOC_GRID = (1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0, 4.5)
ALLOC_SPAN = 1.35        # the allocation grid spans targets / 1.35 .. targets * 1.35
METHODS = ("shipped", "hindsight", "own", "class", "nonclair", "allocation", "best")
LABELS = {
    "shipped": "shipped static schedule",
    "hindsight": "best static in hindsight (pooled eval probe)",
    "own": "own searched plan (per item)",
    "class": "class oracle (other seeds of the class)",
    "nonclair": "non-clairvoyant (own noise, other sampler seeds)",
    "allocation": "allocation oracle (per-item budgets, same mean)",
    "best": "best measured per item (max of candidates)",
}


def noise_seed(cls: int, r: int) -> int:
    return protocol.EVAL_SEED * 10000 + 100 * cls + r


def sampler_seed(cls: int, r: int, j: int = 0) -> int:
    return noise_seed(cls, r) + 5000 + 1000 * j


@dataclass
class Item:
    cls: int
    r: int
    noise_seed: int
    sampler_seed: int
    noise: torch.Tensor = None
    reference: torch.Tensor = None     # uncached output (latent)
    measurement: object = None
    psnr: Dict[str, Dict[float, float]] = field(default_factory=dict)          # method -> target -> image dB
    psnr_latent: Dict[str, Dict[float, float]] = field(default_factory=dict)
    ideal: Dict[str, Dict[float, float]] = field(default_factory=dict)
    grid: Dict[float, tuple] = field(default_factory=dict)   # allocation grid target -> (image dB, ideal, latent dB)


class Harness:
    """Samples one item at a time with separate noise and sampler seeds."""

    def __init__(self, pack, model, ref_model, contexts, sampler: str, steps: int):
        import comfy.sample
        self.pack, self.model, self.ref_model, self.sampler, self.steps = pack, model, ref_model, sampler, steps
        self.contexts = contexts
        self.latent = comfy.sample.fix_empty_latent_channels(model, ref_model.empty_latent(1))
        null = ref_model.null_class
        self.negative = [[contexts[null:null + 1], {}]]
        self.cuts, self.options = pack.nodes.calibration.search_options(model, "auto")
        self.family = pack.nodes.families.detect(model.get_model_object("diffusion_model")).name
        self.runs = 0

    def noise(self, seed: int) -> torch.Tensor:
        import comfy.sample
        return comfy.sample.prepare_noise(self.latent, seed)

    def sample(self, patched, cls: int, noise: torch.Tensor, seed: int) -> torch.Tensor:
        import comfy.sample
        self.runs += 1
        return comfy.sample.sample(patched, noise, self.steps, protocol.CFG, self.sampler, protocol.SCHEDULER,
                                   [[self.contexts[cls:cls + 1], {}]], self.negative, self.latent,
                                   disable_pbar=True, seed=seed)

    def probe(self, cls: int, noise: torch.Tensor, seed: int):
        """(uncached output, measurement) of one probed run: the probe computes every block."""
        core, nodes = self.pack.blockdance_core, self.pack.nodes
        probed, receiver = nodes.telemetry.receiving(
            nodes.patcher.apply_blockdance(self.model, core.probe.ProbePolicy(self.cuts), "probe"))
        out = self.sample(probed, cls, noise, seed)
        return out, receiver.last.record.result.measurement()

    def plan_schedule(self, measurement, target: float, name: str):
        core = self.pack.blockdance_core
        plan = core.search.search(measurement, target, self.options)
        return core.schedule.Schedule.from_plan(name, self.family, measurement.width, measurement.timeline, plan)

    def run_schedule(self, schedule, item: Item):
        """(image PSNR, latent PSNR, ideal speedup) of one item under a schedule."""
        return self.run_policy(self.pack.blockdance_core.schedule.SchedulePolicy(schedule), item)[:3]

    def run_policy(self, step_policy, item: Item):
        """(image PSNR, latent PSNR, ideal speedup, run record) of one item under any step policy."""
        from .measure import recorded_runs, record_of
        from .metrics import psnr_per_image
        patched = self.pack.nodes.patcher.apply_blockdance(self.model, step_policy, step_policy.name)
        with recorded_runs(self.pack) as reports:
            out = self.sample(patched, item.cls, item.noise, item.sampler_seed)
        record = record_of(reports, patched)
        image = float(psnr_per_image(self.ref_model.from_latent(out), self.ref_model.from_latent(item.reference))[0])
        return image, self.pack.blockdance_core.quality.latent_psnr(out, item.reference), float(record.ideal_speedup), record


def pool(measurements: Sequence):
    """One measurement whose reuse errors are the mean over the given ones (rows concatenated: reuse_error
    averages over rows)."""
    first = measurements[0]
    return dataclasses.replace(
        first, features={c: torch.cat([m.features[c] for m in measurements], dim=1) for c in first.cuts},
        bases={c: torch.cat([m.bases[c] for m in measurements], dim=1) for c in first.cuts})


def allocation_grid(targets: Sequence[float], quick: bool) -> List[float]:
    lo, hi = min(targets) / ALLOC_SPAN, max(targets) * ALLOC_SPAN
    grid = {g for g in ALLOC_GRID if lo - 1e-9 <= g <= hi + 1e-9} | set(targets)
    if quick:
        grid = set(targets) | {t * 1.25 for t in targets} | {t / 1.25 for t in targets}
    return sorted(round(g, 4) for g in grid)


def capped(values) -> np.ndarray:
    return np.minimum(np.asarray(values, dtype=np.float64), TIE_DB)


def allocate(options: List[List[tuple]], target: float) -> List[int]:
    """Per item the index of one option (capped dB, compute fraction = 1 / ideal speedup) so that the summed
    compute stays within len(items) / target, greedily maximising the summed dB: start everyone at their
    cheapest option, then take the upgrade with the most dB per extra compute that fits, until none fits."""
    budget = len(options) / target + 1e-9
    choice = [min(range(len(o)), key=lambda k: o[k][1]) for o in options]
    used = sum(o[c][1] for o, c in zip(options, choice))
    while True:
        best = None
        for i, o in enumerate(options):
            db0, cost0 = o[choice[i]]
            for k, (db, cost) in enumerate(o):
                extra = cost - cost0
                if db <= db0 or used + extra > budget:
                    continue
                score = (db - db0) / max(extra, 1e-9)
                if best is None or score > best[0]:
                    best = (score, i, k, extra)
        if best is None:
            return choice
        _, i, k, extra = best
        choice[i], used = k, used + extra


def bootstrap_ci(deltas: np.ndarray) -> List[float]:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, len(deltas), size=(BOOTSTRAP, len(deltas)))
    means = deltas[idx].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarise(items: List[Item], targets: Sequence[float], methods: Sequence[str]) -> Dict[str, dict]:
    out = {}
    for t in targets:
        best = capped([it.psnr["best"][t] for it in items])
        base = capped([it.psnr["shipped"][t] for it in items])
        rows = {}
        for m in methods:
            raw = np.array([it.psnr[m][t] for it in items], dtype=np.float64)
            delta = capped(raw) - base
            rows[m] = {
                "psnr_mean": float(raw.mean()), "psnr_min": float(raw.min()),
                "delta_mean": float(delta.mean()), "delta_ci95": bootstrap_ci(delta), "delta_worst": float(delta.min()),
                "delta_raw_mean": float((raw - np.array([it.psnr["shipped"][t] for it in items])).mean()),
                "within_1db_of_best": float(np.mean(best - capped(raw) <= 1.0 + 1e-9)),
                "ideal_mean": float(np.mean([it.ideal[m][t] for it in items])),
                "ideal_min": float(np.min([it.ideal[m][t] for it in items])),
                "ideal_pooled": float(len(items) / np.sum([1 / it.ideal[m][t] for it in items])),
            }
        out[f"{t:g}"] = rows
    return out


def measure(pack, model, ref_model, contexts, sampler: str, targets: Sequence[float], per_class: int,
            quick: bool, steps: int, log=print) -> dict:
    from .calibrate_reference import schedule_path
    if not 1 <= per_class <= MAX_PER_CLASS:
        raise SystemExit(f"--items-per-class must be 1..{MAX_PER_CLASS}")
    started = time.perf_counter()
    h = Harness(pack, model, ref_model, contexts, sampler, steps)
    Schedule = pack.blockdance_core.schedule.Schedule
    ancestral = "ancestral" in sampler
    classes = protocol.EVAL_CLASSES[:2] if quick else protocol.EVAL_CLASSES
    items: List[Item] = []
    for c in classes:
        for r in range(per_class):
            items.append(Item(c, r, noise_seed(c, r), sampler_seed(c, r)))
    if quick:
        items = items[:max(2, per_class)]
    classes = sorted({it.cls for it in items})
    methods = [m for m in METHODS if ancestral or m != "nonclair"]
    grid = allocation_grid(targets, quick)

    # probes: every item (reference + own measurement); the class oracle's other seeds
    for it in items:
        it.noise = h.noise(it.noise_seed)
        it.reference, it.measurement = h.probe(it.cls, it.noise, it.sampler_seed)
        for m in methods:
            it.psnr[m], it.psnr_latent[m], it.ideal[m] = {}, {}, {}
    log(f"probed {len(items)} items ({time.perf_counter() - started:.0f} s)")
    other = 1 if quick else CLASS_OTHER_SEEDS
    class_measurement = {}
    for c in classes:
        ms = [h.probe(c, h.noise(noise_seed(c, MAX_PER_CLASS + j)), sampler_seed(c, MAX_PER_CLASS + j))[1]
              for j in range(other)]
        class_measurement[c] = pool(ms)
    pooled = pool([it.measurement for it in items])
    log(f"probed class oracle seeds ({time.perf_counter() - started:.0f} s)")

    def record(it: Item, method: str, t: float, result) -> None:
        it.psnr[method][t], it.psnr_latent[method][t], it.ideal[method][t] = result

    for t in targets:
        shipped = Schedule.load(schedule_path(ref_model.name, sampler, t))
        hindsight = h.plan_schedule(pooled, t, f"hindsight_{t:g}x")
        per_class_schedule = {c: h.plan_schedule(class_measurement[c], t, f"class{c}_{t:g}x") for c in classes}
        for it in items:
            record(it, "shipped", t, h.run_schedule(shipped, it))
            record(it, "hindsight", t, h.run_schedule(hindsight, it))
            record(it, "class", t, h.run_schedule(per_class_schedule[it.cls], it))
        log(f"{t:g}x: shipped, hindsight, class done ({time.perf_counter() - started:.0f} s)")
    for it in items:   # own plans on the allocation grid (includes every target)
        for g in grid:
            it.grid[g] = h.run_schedule(h.plan_schedule(it.measurement, g, f"own_{g:g}x"), it)
        for t in targets:
            record(it, "own", t, it.grid[round(t, 4)])
        if ancestral:
            k = 1 if quick else NONCLAIR_SEEDS
            m = pool([h.probe(it.cls, it.noise, sampler_seed(it.cls, it.r, j))[1] for j in range(1, k + 1)])
            for t in targets:
                record(it, "nonclair", t, h.run_schedule(h.plan_schedule(m, t, f"nonclair_{t:g}x"), it))
    log(f"own plans{' and non-clairvoyant plans' if ancestral else ''} done ({time.perf_counter() - started:.0f} s)")

    allocations = {}
    for t in targets:
        # objective: capped dB, raw dB (1e-3 weight) only to break ties above the cap
        options = [[(float(capped(it.grid[g][0])) + 1e-3 * min(it.grid[g][0], 1e3), 1.0 / it.grid[g][2])
                    for g in grid] for it in items]
        choice = allocate(options, t)
        greedy = sum(options[i][k][0] for i, k in enumerate(choice))
        uniform = sum(options[i][grid.index(round(t, 4))][0] for i in range(len(items)))
        if uniform > greedy:
            choice = [grid.index(round(t, 4))] * len(items)
        allocations[f"{t:g}"] = {"targets": [grid[k] for k in choice], "greedy_won": greedy >= uniform,
                                 "pooled_ideal": len(items) / sum(1.0 / items[i].grid[grid[k]][2]
                                                                  for i, k in enumerate(choice))}
        for it, k in zip(items, choice):
            record(it, "allocation", t, it.grid[grid[k]])
        for it in items:   # best measured: candidates at this target, and own plans at higher targets
            cands = [(it.psnr[m][t], it.psnr_latent[m][t], it.ideal[m][t]) for m in methods
                     if m not in ("allocation", "best")]
            cands += [it.grid[g] for g in grid if g >= t - 1e-9]
            record(it, "best", t, max(cands, key=lambda v: v[0]))
    seconds = time.perf_counter() - started
    return {
        "model": ref_model.name, "label": ref_model.label, "sampler": sampler, "steps": steps, "cfg": protocol.CFG,
        "scheduler": protocol.SCHEDULER, "targets": list(targets), "items_per_class": per_class, "quick": quick,
        "allocation_grid": grid, "tie_db": TIE_DB, "bootstrap": {"resamples": BOOTSTRAP, "seed": BOOTSTRAP_SEED},
        "methods": methods, "labels": {m: LABELS[m] for m in methods},
        "seeds": "noise = EVAL_SEED*10000 + 100*class + r, sampler = noise + 5000; class oracle r = 50.."
                 f"{50 + other - 1}; non-clairvoyant sampler seeds noise + 5000 + 1000*j, j >= 1",
        "items": [{"class": it.cls, "r": it.r, "noise_seed": it.noise_seed, "sampler_seed": it.sampler_seed,
                   "psnr": {m: {f"{t:g}": it.psnr[m][t] for t in targets} for m in methods},
                   "psnr_latent": {m: {f"{t:g}": it.psnr_latent[m][t] for t in targets} for m in methods},
                   "ideal": {m: {f"{t:g}": round(it.ideal[m][t], 4) for t in targets} for m in methods},
                   "grid": {f"{g:g}": list(v) for g, v in it.grid.items()}} for it in items],
        "summary": summarise(items, targets, methods), "allocation": allocations,
        "runs": h.runs, "seconds": round(seconds, 1),
    }


def _ci(row) -> str:
    lo, hi = row["delta_ci95"]
    return f"{row['delta_mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def table(result: dict) -> str:
    lines = [f"{result['label']}, {result['sampler']}, {result['steps']} steps, {len(result['items'])} items "
             f"({result['items_per_class']}/class), batch 1, own sampler seed per item. Mean image PSNR (raw); "
             f"paired delta vs shipped static (PSNR capped at {result['tie_db']:g} dB) with bootstrap 95% CI; worst "
             "item delta; share of items within 1 dB of their own best."]
    for t, rows in result["summary"].items():
        lines.append(f"\ntarget {t}x")
        lines.append(f"{'method':<50}{'PSNR':>7}  {'delta vs shipped [95% CI]':<26}{'worst':>7}{'<=1dB':>7}{'ideal':>7}")
        for m in result["methods"]:
            r = rows[m]
            lines.append(f"{result['labels'][m]:<50}{r['psnr_mean']:7.2f}  {_ci(r):<26}{r['delta_worst']:+7.2f}"
                         f"{r['within_1db_of_best']:7.0%}{r['ideal_pooled']:6.2f}x")
    return "\n".join(lines)


def verdict(result: dict) -> List[str]:
    out = []
    for t, rows in result["summary"].items():
        head = max(rows["best"]["delta_mean"], rows["allocation"]["delta_mean"])
        over_hind = rows["best"]["delta_mean"] - rows["hindsight"]["delta_mean"]
        real = rows["nonclair"]["delta_mean"] if "nonclair" in rows else None
        out.append(f"{t}x: oracle headroom over shipped {head:+.2f} dB ({'>=' if head >= 1.0 else '<'} 1 dB); "
                   f"per-item best over the hindsight static {over_hind:+.2f} dB"
                   + (f"; non-clairvoyant {real:+.2f} dB" if real is not None else ""))
    return out


def markdown(results: List[dict]) -> str:
    """Per model and sampler: rows the methods, per target mean PSNR, paired delta vs shipped [95% CI],
    worst item delta and share within 1 dB of the item's own best; then the verdict lines."""
    lines = []
    for res in results:
        targets = list(res["summary"])
        lines += [f"### {res['label']}, {res['sampler']}", "",
                  f"{len(res['items'])} items ({res['items_per_class']} per class 0-6), {res['steps']} steps, batch 1, "
                  f"own noise and sampler seed per item; {res['runs']} sampling runs, {res['seconds'] / 60:.1f} min wall-clock.", "",
                  "| method | " + " | ".join(f"{t}x PSNR | {t}x Δ [95% CI] | {t}x worst | {t}x ≤1 dB" for t in targets)
                  + " |", "|---|" + "---:|" * (4 * len(targets))]
        for m in res["methods"]:
            cells = []
            for t in targets:
                r = res["summary"][t][m]
                cells += [f"{r['psnr_mean']:.2f}", _ci(r), f"{r['delta_worst']:+.2f}", f"{r['within_1db_of_best']:.0%}"]
            lines.append(f"| {res['labels'][m]} | " + " | ".join(cells) + " |")
        lines += [""] + [f"- {v}" for v in verdict(res)] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--sampler", default=protocol.SAMPLERS[0], choices=protocol.SAMPLERS)
    parser.add_argument("--targets", type=float, nargs="*", default=[2.0, 2.5, 3.0])
    parser.add_argument("--items-per-class", type=int, default=3)
    parser.add_argument("--steps", type=int, default=protocol.STEPS, help="sampling steps (default: the protocol's)")
    parser.add_argument("--quick", action="store_true", help="2 items of classes 0-1, one probe per oracle (a test)")
    parser.add_argument("--json", default=None, help="where the results go (default out/oracle/oracle_<model>_<sampler>.json)")
    parser.add_argument("--markdown", nargs="*", default=None, metavar="JSON",
                        help="print the markdown table of saved results and exit")
    args = parser.parse_args(argv)
    if args.markdown is not None:
        results = []
        for path in args.markdown:
            with open(path) as f:
                data = json.load(f)
            results += data if isinstance(data, list) else [data]
        print(markdown(results))
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from .run import load_reference
    ref_model = models.get(args.model)
    pack, model, contexts = load_reference(ref_model)
    per_class = 1 if args.quick and args.items_per_class == 3 else args.items_per_class
    result = measure(pack, model, ref_model, contexts, args.sampler, args.targets, per_class, args.quick, args.steps)
    print(table(result))
    print("\n".join(verdict(result)))
    path = args.json or os.path.join("out", "oracle", f"oracle_{args.model}_{args.sampler}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path} ({result['runs']} sampling runs, {result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
