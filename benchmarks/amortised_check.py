"""Amortised calibration: one library per reference model gives schedules for settings it never saw.

`python -m benchmarks.amortised_check --model wan21|hunyuan_image21 [--target 2.0] [--retrain]`:

1. Training (skipped when the library file exists, unless --retrain): probe runs of the calibration
   batch (protocol.CALIBRATION_CLASSES, CALIBRATION_SEED) on TRAINING_COUNT settings drawn at random
   (seeded) from a grid of step counts, samplers, schedulers and cfg, never one of the ten settings of
   benchmarks.settings_check; their reuse errors at the model's reuse range make the library
   (blockdance_core/amortised.py), saved as safetensors in benchmarks/reference/amortised/.
2. Evaluation on those ten settings, on the evaluation digits (EVAL_CLASSES, EVAL_SEED), PSNR of the
   decoded digits against the uncached output of the same setting (as settings_check): the setting's own
   calibrated schedule (a probe run of the calibration batch in that setting and the search, as
   BlockDance Calibrate), the amortised schedule (no run: the library's prediction and the search), the
   uncached model at as many steps as cost what the amortised schedule costs, and the shipped 30-step
   euler schedule placed on the setting's timeline (the transfer without a library).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from . import protocol
from .calibrate_reference import schedule_path
from .held_out import HeldOut, held_out
from .measure import node, record_of, recorded_runs
from .metrics import psnr_per_image
from .settings_check import SETTINGS

LIBRARY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "amortised")
GRID = {"steps": (10, 15, 20, 25, 30, 40),
        "sampler": ("euler", "euler_ancestral", "dpmpp_2m", "uni_pc", "heun", "dpmpp_2s_ancestral", "lms", "ddim"),
        "scheduler": ("simple", "normal", "karras", "exponential", "sgm_uniform", "beta"),
        "cfg": (1.0, 1.5, 2.0, 3.0, 4.0, 5.0)}
TRAINING_COUNT = 18
TRAINING_DRAW_SEED = 0


def training_settings(count: int = TRAINING_COUNT, seed: int = TRAINING_DRAW_SEED):
    """(steps, sampler, scheduler, cfg) drawn from GRID, none of them a settings_check setting."""
    held_out = {(steps, sampler, scheduler, float(cfg)) for _, steps, sampler, scheduler, cfg in SETTINGS}
    rng, out = random.Random(seed), []
    while len(out) < count:
        s = (rng.choice(GRID["steps"]), rng.choice(GRID["sampler"]), rng.choice(GRID["scheduler"]),
             float(rng.choice(GRID["cfg"])))
        if s not in held_out and s not in out:
            out.append(s)
    return out


def reuse_range(pack, model_name: str):
    """The (cut, mode) the shipped 30-step schedules (calibration digits) skip the most blocks with."""
    votes = {}
    for sampler in protocol.SAMPLERS:
        for target in protocol.TARGETS:
            schedule = pack.blockdance_core.schedule.Schedule.load(schedule_path(model_name, sampler, target))
            for s in schedule.steps:
                if s.kind == "reuse":
                    votes[(s.cut, s.mode)] = votes.get((s.cut, s.mode), 0) + s.cut
    return max(votes, key=votes.get)


def build_library(h: HeldOut, cut: int, mode: str, count: int):
    started = time.perf_counter()
    report = lambda i, name: print(f"  probed {name} ({time.perf_counter() - started:.0f} s so far)", flush=True)
    library = h.pack.nodes.amortised.build(h.model, h.positive, h.negative, h.latent, protocol.CALIBRATION_SEED,
                                           training_settings(count), (cut, mode), report)
    library.training.update(classes=list(protocol.CALIBRATION_CLASSES), draw_seed=TRAINING_DRAW_SEED)
    print(f"  log-cfg bandwidth {library.cfg_bandwidth:g} (leave-one-out on the training settings)")
    return library


def evaluation_runs(h: HeldOut):
    """(run, patch_with): run(model, steps, sampler, scheduler, cfg) samples the evaluation digits and gives
    them decoded with the run's record; patch_with(schedule) is the model through BlockDance Patch."""
    import comfy.sample
    patch_with = lambda s: node(h.pack, "BlockDancePatch").execute(h.model, "blockdance", 0.75, 2, 0.4, 0.95,
                                                                   schedule=s).result[0]

    def run(m, steps, sampler, scheduler, cfg):
        with recorded_runs(h.pack) as reports:
            out = comfy.sample.sample(m, h.noise, steps, cfg, sampler, scheduler, h.eval_positive, h.negative,
                                      h.eval_latent, disable_pbar=True, seed=protocol.EVAL_SEED)
        return h.ref_model.from_latent(out.detach()), (record_of(reports, m) if reports else None)

    return run, patch_with


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--target", type=float, default=2.0)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--retrain", action="store_true", help="probe the training grid again even if the library exists")
    parser.add_argument("--training-count", type=int, default=TRAINING_COUNT)
    parser.add_argument("--json", default="", help="also write the rows here")
    args = parser.parse_args(argv)
    h = held_out(args.model, args.per_class)
    pack, ref_model, model, labels = h.pack, h.ref_model, h.model, h.labels
    positive, negative, latent = h.positive, h.negative, h.latent
    core = pack.blockdance_core
    path = os.path.join(LIBRARY_DIR, f"{args.model}.safetensors")
    if args.retrain or not os.path.isfile(path):
        cut, mode = reuse_range(pack, args.model)
        print(f"{ref_model.label}: training the amortised library at cut {cut} ({mode}) on {args.training_count} "
              f"settings, calibration classes {protocol.CALIBRATION_CLASSES}, seed {protocol.CALIBRATION_SEED}")
        library = build_library(h, cut, mode, args.training_count)
        os.makedirs(LIBRARY_DIR, exist_ok=True)
        library.save(path)
        print(f"  wrote {path}")
    library = core.amortised.Library.load(path)
    print(f"library {path}: {len(library.entries)} settings, cut {library.cut} ({library.mode}), "
          f"cfg bandwidth {library.cfg_bandwidth:g}")

    run, patch_with = evaluation_runs(h)
    shipped = core.schedule.Schedule.load(schedule_path(args.model, "euler", args.target))
    psnr = lambda out, base: float(psnr_per_image(out, base).mean())
    print(f"{ref_model.label}, target {args.target:g}x; evaluated on {len(labels)} digits of classes "
          f"{protocol.EVAL_CLASSES[0]}-{protocol.EVAL_CLASSES[-1]} (seed {protocol.EVAL_SEED}); PSNR against the "
          "uncached output of the same setting")
    print(f"{'setting':<28}{'own calibrated':>18}{'amortised':>18}{'vs own':>8}{'fewer steps':>22}"
          f"{'shipped 30-step':>18}")
    rows = []
    for name, steps, sampler, scheduler, cfg in SETTINGS:
        started = time.perf_counter()
        sampling = pack.nodes.calibration.Sampling(positive, negative, latent, protocol.CALIBRATION_SEED, steps, cfg,
                                                   sampler, scheduler)
        cuts, options = pack.nodes.calibration.search_options(model, "auto")
        _, measurement = pack.nodes.calibration.measure(model, sampling, cuts)
        own = core.schedule.Schedule.from_plan("own", library.family, measurement.width, measurement.timeline,
                                               core.search.search(measurement, args.target, options))
        timeline = pack.nodes.amortised.timeline_for(model, steps, sampler, scheduler)
        drift = max(abs(a - b) for a, b in zip(timeline.positions, measurement.timeline.positions))
        amortised = library.schedule(timeline, args.target, sampler, cfg)
        base, _ = run(model, steps, sampler, scheduler, cfg)
        own_out, own_rec = run(patch_with(own), steps, sampler, scheduler, cfg)
        am_out, am_rec = run(patch_with(amortised), steps, sampler, scheduler, cfg)
        fewer = core.budget.fewer_steps(steps, am_rec.ideal_speedup)
        fewer_out, _ = run(model, fewer, sampler, scheduler, cfg)
        moved_out, moved_rec = run(patch_with(shipped), steps, sampler, scheduler, cfg)
        row = {"setting": name, "steps": steps, "sampler": sampler, "scheduler": scheduler, "cfg": cfg,
               "own_ideal": round(own_rec.ideal_speedup, 4), "own_psnr": round(psnr(own_out, base), 2),
               "amortised_ideal": round(am_rec.ideal_speedup, 4), "amortised_planned": amortised.predicted_speedup,
               "own_planned": own.predicted_speedup,
               "amortised_as_planned": am_rec.steps_reused == set(amortised.reuse_steps) and not am_rec.fallback_calls, "amortised_psnr": round(psnr(am_out, base), 2),
               "amortised_mask": "".join(s.kind[0].upper() for s in amortised.steps),
               "own_mask": "".join(s.kind[0].upper() for s in own.steps),
               "fewer_steps": fewer, "fewer_psnr": round(psnr(fewer_out, base), 2),
               "shipped_ideal": round(moved_rec.ideal_speedup, 4), "shipped_psnr": round(psnr(moved_out, base), 2),
               "timeline_drift": drift, "seconds": round(time.perf_counter() - started, 1)}
        row["delta"] = round(row["amortised_psnr"] - row["own_psnr"], 2)
        rows.append(row)
        cell = lambda ideal, db: f"{ideal:.2f}x {db:5.1f} dB"
        print(f"{name:<28}{cell(row['own_ideal'], row['own_psnr']):>18}"
              f"{cell(row['amortised_ideal'], row['amortised_psnr']):>18}{row['delta']:>+8.1f}"
              f"{f'{fewer} st ' + cell(steps / fewer, row['fewer_psnr']):>22}"
              f"{cell(row['shipped_ideal'], row['shipped_psnr']):>18}", flush=True)
        print(f"    own {row['own_mask']}\n    am  {row['amortised_mask']}  ({row['seconds']:.0f} s"
              + (f"; timeline positions differ by {drift:.2g}" if drift > 1e-6 else "") + ")", flush=True)
    within = sum(1 for r in rows if r["delta"] >= -1.0)
    above_fewer = sum(1 for r in rows if r["amortised_psnr"] > r["fewer_psnr"])
    exact = all(r["amortised_planned"] >= args.target - 1e-9 for r in rows)
    as_planned = sum(1 for r in rows if r["amortised_as_planned"])
    print(f"amortised within 1 dB of the setting's own calibrated schedule on {within}/{len(rows)} settings "
          f"(target: >= 8); above fewer steps at the same compute on {above_fewer}/{len(rows)} (target: all); "
          f"every amortised schedule plans >= {args.target:g}x: {exact}, and reused exactly its planned steps in "
          f"{as_planned}/{len(rows)} runs (the measured ideal counts every model call: a sampler's off-grid "
          "midpoint calls always compute)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "target": args.target, "library": os.path.relpath(path),
                       "rows": rows, "within_1db": within, "above_fewer": above_fewer}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
