"""Speed and fidelity of BlockDance beside ComfyUI's EasyCache / LazyCache and fewer steps.

`python -m benchmarks.run [--quick] [--json PATH]` (from the repository root, COMFYUI_PATH set)
loads the reference model through ComfyUI's stock UNETLoader, samples a fixed set of seeds and
classes with every configuration under a deterministic (euler) and an ancestral (euler_ancestral)
sampler, and reports per configuration:

- speedup: median over rounds of (baseline time / this configuration's time), every round in a
  fresh random order with the baseline re-timed every few runs and each configuration compared
  with the baseline runs around it, all in this one process;
- ideal_speedup: baseline block executions / this configuration's (counted with forward hooks
  on the real block modules), and efficiency = speedup / ideal_speedup;
- fidelity to the uncached output from the same noise: PSNR (mean, worst) and SSIM of the
  decoded digits; sample quality: classifier accuracy and FD on classifier features.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from .comfy_env import load_pack
from .measure import BlockCounter
from .metrics import psnr_per_image, quality, ssim
from .reference import classifier as digit_classifier
from .reference import data, model as ref

SAMPLERS = ("euler", "euler_ancestral")
ANCHOR_EVERY = 6  # configurations timed between two baseline runs


@dataclass
class Config:
    method: str
    params: dict
    steps: int
    patched: object = None            # the ModelPatcher to sample with
    block_calls: int = 0
    times: List[float] = field(default_factory=list)
    ratios: List[float] = field(default_factory=list)  # nearby baseline time / this run's time
    output: Optional[torch.Tensor] = None

    @property
    def label(self) -> str:
        return self.method + "".join(f" {k}={v}" for k, v in self.params.items() if k not in ("start_percent", "end_percent"))


def load_reference(weights: str = ref.WEIGHTS):
    """The reference model through stock UNETLoader, plus its class contexts."""
    pack = load_pack()
    import folder_paths
    import nodes
    if not os.path.isfile(weights):
        raise SystemExit(f"{weights} is missing: train it with python -m benchmarks.reference.train")
    folder = os.path.dirname(os.path.abspath(weights))
    if folder not in folder_paths.get_folder_paths("diffusion_models"):
        folder_paths.add_model_folder_path("diffusion_models", folder)
    model = nodes.UNETLoader().load_unet(os.path.basename(weights), "default")[0]
    return pack, model, ref.load_class_contexts()


def build_configs(pack, model, steps: int, quick: bool) -> List[Config]:
    from comfy_extras.nodes_easycache import EasyCacheNode, LazyCacheNode
    node = pack.NODE_CLASS_MAPPINGS["BlockDancePatch"]()
    configs = [Config("baseline", {}, steps, model)]
    depths = (0.75,) if quick else (0.5, 0.75)
    ns = (1, 2, 3) if quick else (1, 2, 3, 4, 5)
    for mode in ("blockdance", "delta"):
        for depth in depths:
            for n in ns:
                params = {"N": n, "depth": depth, "start_percent": 0.4, "end_percent": 0.95}
                configs.append(Config(mode, params, steps, node.patch(model, mode, depth, n, 0.4, 0.95)[0]))
    thresholds = (0.1,) if quick else (0.05, 0.1, 0.2)
    for method, cls in (("easycache", EasyCacheNode), ("lazycache", LazyCacheNode)):
        for th in thresholds:
            params = {"reuse_threshold": th, "start_percent": 0.15, "end_percent": 0.95}
            configs.append(Config(method, params, steps, cls.execute(model, th, 0.15, 0.95, False).result[0]))
    return configs


@dataclass
class Workload:
    """What one sampling run gets: initial noise, empty latent and conditioning for a batch."""
    noise: torch.Tensor
    latent: torch.Tensor
    positive: list
    negative: list


def make_workload(model, contexts, labels, seed: int) -> Workload:
    import comfy.sample
    latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros(len(labels), 16, 1, 8, 8))
    return Workload(comfy.sample.prepare_noise(latent, seed), latent, [[contexts[labels], {}]],
                    [[contexts[ref.NULL_CLASS:ref.NULL_CLASS + 1], {}]])


def sample(cfg: Config, noise, latent, positive, negative, sampler: str, seed: int) -> torch.Tensor:
    import comfy.sample
    return comfy.sample.sample(cfg.patched, noise, cfg.steps, 2.0, sampler, "simple", positive, negative, latent,
                               disable_pbar=True, seed=seed)


def run_sampler(configs, base_model, sampler, fidelity: Workload, timing: Workload, seed, repeats):
    dm = base_model.get_model_object("diffusion_model")

    def counted_run(cfg: Config) -> None:
        """Sample once with forward hooks on the real blocks: the output and the executed blocks."""
        counter = BlockCounter(dm, ["blocks"])
        try:
            cfg.output = sample(cfg, fidelity.noise, fidelity.latent, fidelity.positive, fidelity.negative, sampler, seed)
        finally:
            counter.close()
        cfg.block_calls = sum(counter.counts)

    for cfg in configs:
        counted_run(cfg)
    # Fewer steps at each distinct cost of the caching configurations.
    base = configs[0]
    wanted = sorted({max(1, round(base.steps * c.block_calls / base.block_calls)) for c in configs[1:]} - {base.steps})
    for steps in wanted:
        configs.append(Config("fewer_steps", {"steps": steps}, steps, base_model))
        counted_run(configs[-1])
    # Timing. Speed on these shared machines drifts by 5-15% between identical runs, so each round
    # visits the configurations in a fresh random order with the baseline re-timed every few runs,
    # and each configuration is compared with the baseline runs next to it (no hooks attached).
    order = random.Random(seed)

    def timed(cfg: Config) -> float:
        gc.collect()
        start = time.perf_counter()
        sample(cfg, timing.noise, timing.latent, timing.positive, timing.negative, sampler, seed)
        return time.perf_counter() - start

    for _ in range(repeats):
        shuffled = order.sample(configs[1:], len(configs) - 1)
        anchors = [timed(base)]
        for start in range(0, len(shuffled), ANCHOR_EVERY):
            chunk = [(cfg, timed(cfg)) for cfg in shuffled[start:start + ANCHOR_EVERY]]
            anchors.append(timed(base))
            local_base = (anchors[-2] + anchors[-1]) / 2
            for cfg, t in chunk:
                cfg.times.append(t)
                cfg.ratios.append(local_base / t)
        base.times += anchors
    return configs


def evaluate(configs, sampler, labels, classifier, real_features) -> List[dict]:
    base = configs[0]
    base_images = data.from_latent(base.output)
    rows = []
    for cfg in configs:
        images = data.from_latent(cfg.output)
        psnr = psnr_per_image(images, base_images)
        t = sorted(cfg.times)[len(cfg.times) // 2]
        ideal = base.block_calls / cfg.block_calls
        speedup = statistics.median(cfg.ratios) if cfg.ratios else 1.0
        rows.append({
            "method": cfg.method, "sampler": sampler, "params": cfg.params,
            "speedup": round(speedup, 4), "ideal_speedup": round(ideal, 4), "efficiency": round(speedup / ideal, 4),
            "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()), "ssim": round(ssim(images, base_images), 5),
            **{k: round(v, 4) for k, v in quality(images, labels, classifier, real_features).items()},
            "seconds": round(t, 4), "label": cfg.label,
        })
    return rows


def non_block_share(configs: List[Config]) -> float:
    """Share of the baseline's time spent outside the block stack (embedders, head, sampler), from a
    least-squares fit time = fixed + per_block * block_calls over every configuration: what keeps
    efficiency below 1 (the end-to-end ceiling is 1 / (o + (1 - o) f), method.md section 6)."""
    xs = torch.tensor([float(c.block_calls) for c in configs], dtype=torch.float64)
    ys = torch.tensor([sorted(c.times)[len(c.times) // 2] for c in configs], dtype=torch.float64)
    design = torch.stack([torch.ones_like(xs), xs], dim=1)
    fixed, per_block = torch.linalg.lstsq(design, ys.unsqueeze(1)).solution.flatten().tolist()
    base = configs[0]
    return fixed / (fixed + per_block * base.block_calls)


def print_table(rows: List[dict]) -> None:
    print(f"{'sampler':<16}{'configuration':<38}{'speedup':>8}{'ideal':>7}{'eff':>6}{'PSNR':>7}{'min':>7}"
          f"{'SSIM':>7}{'acc':>6}{'FD':>9}")
    for r in rows:
        fmt = lambda v: "   inf" if math.isinf(v) else f"{v:6.1f}"
        print(f"{r['sampler']:<16}{r['label']:<38}{r['speedup']:7.2f}x{r['ideal_speedup']:6.2f}x{r['efficiency']:6.2f}"
              f"{fmt(r['psnr_mean']):>7}{fmt(r['psnr_min']):>7}{r['ssim']:7.4f}{r['cls_acc']:6.2f}{r['fd_cls']:9.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations, samples and steps (< 2 min)")
    parser.add_argument("--json", default="out/benchmark/results.json", help="where the per-configuration JSON goes")
    parser.add_argument("--plot", default=None, help="Pareto plot PNG (default: beside the JSON)")
    parser.add_argument("--grid", default=None, help="sample grid PNG (default: beside the JSON)")
    parser.add_argument("--samples-per-class", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weights", default=ref.WEIGHTS, help="reference model file (stock Wan 2.1 t2v layout)")
    parser.add_argument("--speed-only", action="store_true",
                        help="random-weight models at each family's real depth: speed and patch overhead only")
    parser.add_argument("--device", default="cpu", help="speed-only: cpu or cuda")
    parser.add_argument("--full-size", action="store_true", help="speed-only: full-width Flux.1 (needs a GPU)")
    args = parser.parse_args(argv)
    if args.speed_only:
        from . import speed
        return speed.main(args)
    per_class = args.samples_per_class or (1 if args.quick else 2)
    steps = args.steps or (16 if args.quick else 30)
    repeats = args.repeats or (1 if args.quick else 2)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    started = time.time()
    pack, model, contexts = load_reference(args.weights)
    labels = torch.arange(10).repeat_interleave(per_class)
    fidelity = make_workload(model, contexts, labels, args.seed)
    timing = make_workload(model, contexts, torch.arange(10), args.seed)  # one digit per class
    classifier = digit_classifier.load()
    _, (test_x, _) = data.split(*data.load_mnist())
    with torch.no_grad():
        real_features = classifier.features(test_x)

    rows, grids, shares = [], {}, {}
    for sampler in SAMPLERS:
        configs = run_sampler(build_configs(pack, model, steps, args.quick), model, sampler, fidelity, timing,
                              args.seed, repeats)
        rows += evaluate(configs, sampler, labels, classifier, real_features)
        grids[sampler] = configs
        shares[sampler] = non_block_share(configs)
    print(f"reference Wan 2.1 (24 blocks) on MNIST, {steps} steps, cfg 2, {torch.get_num_threads()} thread(s); "
          f"fidelity and quality on {len(labels)} samples ({per_class}/class); speed: median of {repeats} "
          f"round(s) over 10 samples, shuffled, baseline re-timed every {ANCHOR_EVERY} runs")
    print_table(rows)
    print("time outside the block stack (fit over all configurations): "
          + ", ".join(f"{s} {share:.0%}" for s, share in shares.items()))
    out_dir = os.path.dirname(os.path.abspath(args.json))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
    from .plots import pareto_plot, sample_grid
    pareto_plot(rows, args.plot or os.path.join(out_dir, "pareto.png"))
    sample_grid(grids, per_class, args.grid or os.path.join(out_dir, "samples.png"))
    print(f"wrote {args.json}, pareto and sample grid PNGs in {out_dir} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
