"""Speed and fidelity of BlockDance beside ComfyUI's EasyCache / LazyCache and fewer steps.

`python -m benchmarks.run [--quick] [--model NAME] [--json PATH]` (from the repository root,
COMFYUI_PATH set) loads a reference model through ComfyUI's stock UNETLoader, samples a fixed set of
evaluation seeds and classes (benchmarks/protocol.py: never the ones schedules are calibrated on)
with every configuration under a deterministic (euler) and an ancestral (euler_ancestral) sampler:
the uncached model; BlockDance and Delta-Cache with the paper's fixed window; the shipped calibrated
schedules (benchmarks/calibrate_reference.py) at 1.25x-3.5x, those whose search may forecast at
2x-6x and those whose search may skip rear block ranges (Delta-DiT) at 1.5x-3x; the forecasting peers Spectrum and TaylorSeer (benchmarks/peers.py) along their speed knobs;
EasyCache; LazyCache; and the uncached model at fewer steps matched to each configuration's cost. It reports per configuration:

- speedup: baseline time / this configuration's time, all configurations of a sampler timed
  together in rounds that advance every run a sampler step at a time (benchmarks/lockstep.py),
  each run's time taken per step and cleaned of contention by keeping each step's fastest round;
  speedup_wall: the ratio of the median whole-run times of the same rounds;
- ideal_speedup: baseline block executions / this configuration's in the timed runs (counted
  with forward hooks on the real block modules), and efficiency = speedup / ideal_speedup;
- fidelity to the uncached output from the same noise: PSNR (mean, worst) and SSIM of the
  decoded digits; sample quality: classifier accuracy and FD on classifier features;
- predicted_error: what the calibration's error model (measured on the calibration batch) predicts
  for the configuration's plan, and per sampler the rank correlation of that prediction with the
  measured PSNR over every reuse configuration.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import List, Optional

import torch

from . import peers, protocol
from .calibrate_reference import calibration_inputs, schedule_path
from .comfy_env import load_pack
from .tiny_models import load_via_unet_loader
from .configs import Config, Workload, evaluate, make_workload, sample, time_in_lockstep
from .delta_dit import delta_dit_configs
from .measure import BlockCounter, node, patch, record_of, recorded_runs
from .per_instance import per_instance_rows
from .reference import classifier as digit_classifier
from .reference import data, models

SAMPLERS = protocol.SAMPLERS
PACK_METHODS = ("blockdance", "delta", "calibrated", "calibrated_forecast", "calibrated_ranges")
FORECAST_PEERS = ("spectrum", "taylorseer")   # run on the pack's engine (benchmarks/peers.py)
BASELINE_COPIES = 3  # uncached runs per lockstep round: every speedup divides by their mean


def load_reference(ref_model):
    """A reference model through stock UNETLoader, plus its class contexts."""
    pack = load_pack()
    if not os.path.isfile(ref_model.weights):
        raise SystemExit(f"{ref_model.weights} is missing: train it with "
                         f"python -m benchmarks.reference.train --model {ref_model.name}")
    return pack, load_via_unet_loader(ref_model.weights), ref_model.load_class_contexts()


def build_configs(pack, model, steps: int, quick: bool, sampler: str, model_name: str) -> List[Config]:
    from comfy_extras.nodes_easycache import EasyCacheNode, LazyCacheNode
    configs = [Config("baseline", {}, steps, model)]
    depths = (0.75,) if quick else (0.5, 0.75)
    ns = (1, 2, 3) if quick else (1, 2, 3, 4, 5)
    for mode in ("blockdance", "delta"):
        for depth in depths:
            for n in ns:
                params = {"N": n, "depth": depth, "start_percent": 0.4, "end_percent": 0.95}
                configs.append(Config(mode, params, steps, patch(pack, model, mode, depth, n, 0.4, 0.95)))
    configs += schedule_configs(pack, model, model_name, sampler, steps, (2.0,) if quick else protocol.SCHEDULE_TARGETS)
    configs += schedule_configs(pack, model, model_name, sampler, steps,
                                (3.0,) if quick else protocol.FORECAST_TARGETS, "taylor1")
    configs += schedule_configs(pack, model, model_name, sampler, steps,
                                (2.0,) if quick else protocol.RANGE_TARGETS, ranges="front and rear")
    for alpha in ((0.75,) if quick else peers.SPECTRUM_ALPHAS):
        configs.append(Config("spectrum", {"alpha": alpha}, steps, peers.patch_peer(
            pack, model, peers.spectrum_computes(steps, alpha), peers.spectrum_forecast(pack, steps))))
    for interval in ((4,) if quick else peers.TAYLORSEER_INTERVALS):
        configs.append(Config("taylorseer", {"interval": interval}, steps, peers.patch_peer(
            pack, model, peers.taylorseer_computes(steps, interval), peers.taylorseer_forecast(pack))))
    thresholds = (0.1,) if quick else (0.05, 0.1, 0.2)
    for method, cls in (("easycache", EasyCacheNode), ("lazycache", LazyCacheNode)):
        for th in thresholds:
            params = {"reuse_threshold": th, "start_percent": 0.15, "end_percent": 0.95}
            configs.append(Config(method, params, steps, cls.execute(model, th, 0.15, 0.95, False).result[0]))
    configs += delta_dit_configs(pack, model, steps)
    return configs


def schedule_configs(pack, model, model_name: str, sampler: str, steps: int, targets, forecast: str = "copy",
                     ranges: str = "front"):
    """The shipped schedules for these targets (benchmarks/calibrate_reference.py), each through
    BlockDance Patch's schedule input: rows `calibrated`, `calibrated_forecast` for the schedules
    whose search could forecast, `calibrated_ranges` for those whose search could skip rear ranges."""
    configs = []
    for target in targets:
        path = schedule_path(model_name, sampler, target, forecast, ranges)
        if not os.path.isfile(path):
            flags = ("" if forecast == "copy" else f" --forecast {forecast}") + \
                    ("" if ranges == "front" else f' --ranges "{ranges}"')
            raise SystemExit(f"{path} is missing: make the shipped schedules with "
                             f"python -m benchmarks.calibrate_reference --model {model_name}{flags}")
        schedule = pack.blockdance_core.schedule.Schedule.load(path)
        patched = node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95, schedule=schedule)
        method = "calibrated_forecast" if forecast != "copy" else "calibrated_ranges" if ranges != "front" else "calibrated"
        configs.append(Config(method, {"target_speedup": target}, steps, patched.result[0]))
    return configs


def run_sampler(pack, configs, base_model, ref_model, sampler, fidelity: Workload, timing: Workload, seed, repeats):
    dm = base_model.get_model_object("diffusion_model")
    measurement = measure_calibration(pack, base_model, ref_model, sampler, configs[0].steps)

    def counted_run(cfg: Config) -> None:
        """Sample once with forward hooks on the real blocks: the output, the executed blocks and,
        for BlockDance's own configurations, the predicted error of the plan the run followed."""
        counter = BlockCounter(dm, list(ref_model.block_containers))
        try:
            with recorded_runs(pack) as reports:
                cfg.output = sample(cfg, fidelity, sampler, seed)
        finally:
            counter.close()
        cfg.block_calls = sum(counter.counts)
        if cfg.method in PACK_METHODS + FORECAST_PEERS:
            record = record_of(reports, cfg.patched)
            actions = [s.action for s in record.steps]
            cfg.predicted_error = pack.blockdance_core.search.predicted_error(measurement, actions)

    for cfg in configs:
        counted_run(cfg)
    # Fewer steps at each distinct cost of the caching configurations.
    base = configs[0]
    wanted = sorted({max(1, round(base.steps * c.block_calls / base.block_calls)) for c in configs[1:]} - {base.steps})
    for steps in wanted:
        configs.append(Config("fewer_steps", {"steps": steps}, steps, base_model.clone()))  # own patcher per run
        counted_run(configs[-1])
    base.copies = [Config("baseline", {"copy": i}, base.steps, base_model.clone()) for i in range(1, BASELINE_COPIES)]
    time_in_lockstep(configs + base.copies, sampler, timing, seed, repeats, dm, ref_model.block_containers)
    return configs


def measure_calibration(pack, model, ref_model, sampler: str, steps: int):
    """The calibration error model for this sampler and step count: one probed uncached run of the
    calibration batch, exactly as BlockDance Calibrate measures."""
    calibration = pack.nodes.calibration
    positive, negative, latent = calibration_inputs(ref_model, ref_model.load_class_contexts())
    sampling = calibration.Sampling(positive, negative, latent, protocol.CALIBRATION_SEED, steps, protocol.CFG,
                                    sampler, protocol.SCHEDULER)
    cuts, _ = calibration.search_options(model, "auto")
    return calibration.measure(model, sampling, cuts)[1]


def rank_correlation(rows: List[dict]) -> Optional[float]:
    """Spearman correlation between predicted error and measured PSNR over the rows that reused
    something (a perfect ranking gives -1: more predicted error, less PSNR)."""
    scored = [r for r in rows if r.get("predicted_error") is not None and r["predicted_error"] > 0]
    if len(scored) < 3:
        return None

    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):   # average ranks of ties
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for t in range(i, j + 1):
                out[order[t]] = (i + j) / 2
            i = j + 1
        return torch.tensor(out, dtype=torch.float64)

    a = ranks([r["predicted_error"] for r in scored])
    b = ranks([r["psnr_mean"] for r in scored])
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def non_block_share(rows: List[dict]) -> float:
    """Share of the baseline's time spent outside the block stack (embedders, head, sampler), from a
    least-squares fit seconds = fixed + per_block * blocks over the rows that run the baseline's
    full schedule (fewer_steps rows also cut the per-step cost outside the blocks): what keeps
    efficiency below 1 (the end-to-end ceiling is 1 / (o + (1 - o) f), method.md section 6).
    Reads only the JSON rows, so it can be recomputed from a saved results file."""
    full = [r for r in rows if r["method"] != "fewer_steps"]
    xs = torch.tensor([1.0 / r["ideal_speedup"] for r in full], dtype=torch.float64)  # blocks, baseline = 1
    ys = torch.tensor([r["seconds"] for r in full], dtype=torch.float64)
    design = torch.stack([torch.ones_like(xs), xs], dim=1)
    fixed, per_block = torch.linalg.lstsq(design, ys.unsqueeze(1)).solution.flatten().tolist()
    return fixed / (fixed + per_block)


def print_table(rows: List[dict]) -> None:
    print(f"{'sampler':<16}{'configuration':<38}{'speedup':>8}{'ideal':>7}{'eff':>6}{'wall':>7}{'PSNR':>7}{'min':>7}"
          f"{'SSIM':>7}{'acc':>6}{'FD':>9}{'pred.err':>10}")
    for r in rows:
        fmt = lambda v: "   inf" if math.isinf(v) else f"{v:6.1f}"
        print(f"{r['sampler']:<16}{r['label']:<38}{r['speedup']:7.2f}x{r['ideal_speedup']:6.2f}x{r['efficiency']:6.2f}"
              f"{r['speedup_wall']:6.2f}x{fmt(r['psnr_mean']):>7}{fmt(r['psnr_min']):>7}{r['ssim']:7.4f}"
              f"{r['cls_acc']:6.2f}{r['fd_cls']:9.2f}"
              + (f"{r['predicted_error']:10.3f}" if r.get("predicted_error") is not None else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations, samples and steps (< 3 min)")
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS),
                        help="which reference model (one per run, each under an hour on 2 cores)")
    parser.add_argument("--json", default=None, help="where the per-configuration JSON goes "
                        "(default out/benchmark/results_<model>.json; --speed-only: out/benchmark/speed.json)")
    parser.add_argument("--plot", default=None, help="Pareto plot PNG (default: beside the JSON)")
    parser.add_argument("--grid", default=None, help="sample grid PNG (default: beside the JSON)")
    parser.add_argument("--samples-per-class", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="lockstep timing rounds")
    parser.add_argument("--seed", type=int, default=protocol.EVAL_SEED)
    parser.add_argument("--no-per-sample", action="store_true",
                        help="skip the per-sample rows (BlockDance-Ada, the gate, the static schedule at batch 1)")
    parser.add_argument("--speed-only", action="store_true",
                        help="random-weight models at each family's real depth: speed and patch overhead only")
    parser.add_argument("--device", default="cpu", help="speed-only: cpu or cuda")
    parser.add_argument("--full-size", action="store_true", help="speed-only: full-width Flux.1 (needs a GPU)")
    parser.add_argument("--families", nargs="*", default=None, help="speed-only: only these families")
    args = parser.parse_args(argv)
    default_json = "speed.json" if args.speed_only else f"results_{args.model}.json"
    args.json = args.json or os.path.join("out", "benchmark", default_json)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.speed_only:
        from . import speed
        return speed.main(args)
    per_class = args.samples_per_class or (1 if args.quick else 3)
    steps = args.steps or (16 if args.quick else protocol.STEPS)
    repeats = args.repeats or (2 if args.quick else 4)

    started = time.time()
    ref_model = models.get(args.model)
    pack, model, contexts = load_reference(ref_model)
    eval_classes = torch.tensor(protocol.EVAL_CLASSES)
    labels = eval_classes.repeat_interleave(per_class)
    fidelity = make_workload(ref_model, model, contexts, labels, args.seed)
    timing_labels = eval_classes[::2] if args.quick else eval_classes   # one digit per class (quick: every other)
    timing = make_workload(ref_model, model, contexts, timing_labels, args.seed)
    classifier = digit_classifier.load()
    _, (test_x, test_y) = data.split(*data.load_mnist())
    with torch.no_grad():
        real_features = classifier.features(test_x[torch.isin(test_y, eval_classes)])

    rows, grids, shares = [], {}, {}
    for sampler in SAMPLERS:
        configs = run_sampler(pack, build_configs(pack, model, steps, args.quick, sampler, ref_model.name), model,
                              ref_model, sampler, fidelity, timing, args.seed, repeats)
        sampler_rows = evaluate(configs, ref_model, sampler, labels, classifier, real_features)
        sampler_rows[0]["rank_correlation"] = rank_correlation(sampler_rows)
        rows += sampler_rows
        if not args.no_per_sample:
            rows += per_instance_rows(pack, model, ref_model, contexts, sampler, steps, args.quick, labels, fidelity,
                                      args.seed, repeats, classifier, real_features)
        grids[sampler] = configs
        shares[sampler] = non_block_share(sampler_rows)
    print(f"reference {ref_model.label} on MNIST, {steps} steps, cfg {protocol.CFG:g}, {torch.get_num_threads()} "
          f"thread(s); fidelity and quality on {len(labels)} samples ({per_class}/class, classes "
          f"{protocol.EVAL_CLASSES[0]}-{protocol.EVAL_CLASSES[-1]}); speed over {len(timing_labels)} samples in {repeats} "
          f"lockstep round(s): speedup from each step's fastest round, wall = ratio of median run times")
    print_table(rows)
    print("time outside the block stack (fit over the full-schedule configurations): "
          + ", ".join(f"{s} {share:.0%}" for s, share in shares.items()))
    print(f"timing noise floor: {BASELINE_COPIES} uncached copies per round agree within "
          + ", ".join(f"{r['sampler']} {r['timing_noise']:.1%}" for r in rows if "timing_noise" in r))
    print("rank correlation of predicted error with measured PSNR (Spearman, reuse configurations; -1 = perfect): "
          + ", ".join(f"{r['sampler']} {r['rank_correlation']:+.3f}" for r in rows
                      if r.get("rank_correlation") is not None))
    out_dir = os.path.dirname(os.path.abspath(args.json))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
    from .plots import pareto_plot, sample_grid
    pareto_plot(rows, args.plot or os.path.join(out_dir, f"pareto_{ref_model.name}.png"))
    sample_grid(grids, per_class, args.grid or os.path.join(out_dir, f"samples_{ref_model.name}.png"),
                ref_model.from_latent)
    print(f"wrote {args.json}, pareto and sample grid PNGs in {out_dir} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
