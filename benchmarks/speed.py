"""Speed only: random-weight models with each family's real block count, at widths a CPU can run.

`python -m benchmarks.run --speed-only` times, in one process and lockstep rounds
(benchmarks/lockstep.py: runs take turns a sampler step at a time; a run's time is the sum of
each step's fastest round), the uncached model, BlockDance N=1 (the cost of the patch machinery
alone), N=2 / N=3, N=3 skipping the whole stack and the same forecasting (order 2), and prints
measured speedup, ideal speedup (executed block fraction), the per-step overhead and what forecasting
costs over the copy.
Pass `--device cuda --full-size` on a GPU machine for a full-width Flux.1 in bf16.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List

import torch

from . import tiny_models
from .comfy_env import load_pack
from .lockstep import Runner, Timed, clean_seconds, reference_time, run_lockstep, sampler_runner
from .measure import description_of, patch, record_of, recorded_runs, sample_tiny

# family -> (unet_config overrides with the real block count, image side in px)
CPU_SHAPES: Dict[str, tuple] = {
    "flux": ({"depth": 19, "depth_single_blocks": 38, "hidden_size": 256, "axes_dim": [16, 56, 56]}, 128),
    "wan21": ({"num_layers": 30, "dim": 256, "num_heads": 2, "ffn_dim": 1024}, 128),
    "hunyuan_video": ({"depth": 20, "depth_single_blocks": 40, "hidden_size": 256, "num_heads": 2}, 128),
    "qwen_image": ({"num_layers": 60}, 128),
    "ltxv": ({"num_layers": 28}, 256),
    "pixart_sigma": ({"depth": 28}, 272),
}
FULL_FLUX = ({"depth": 19, "depth_single_blocks": 38, "hidden_size": 3072, "num_heads": 24,
              "axes_dim": [16, 56, 56]}, 1024)
# name -> BlockDance Patch settings (None: the unpatched model). The last one skips the whole stack
# (depth 1, delta), where the calibrated schedules of the reference models put most of their reuse.
# "+taylor2" is the same plan forecasting (order 2, three anchors): its time over the copy's is what
# forecasting costs (the forecasting issue's "no more than 2% of a run's time" row).
CONFIGS = (("uncached", None), ("N=1", {"N": 1}), ("N=2", {"N": 2}), ("N=3", {"N": 3}),
           ("N=3 depth=1", {"N": 3, "depth": 1.0, "mode": "delta"}),
           ("N=3 depth=1 +taylor2", {"N": 3, "depth": 1.0, "mode": "delta", "forecast": "taylor2"}))
FORECAST_OF = {"N=3 depth=1 +taylor2": "N=3 depth=1"}
UNCACHED_COPIES = 3  # the uncached time is the mean over these runs of each round


def _to_device(tm, device: str, dtype: torch.dtype):
    if device != "cpu":
        tm.patcher.model.to(device=device, dtype=dtype)
        tm.patcher.model.diffusion_model.dtype = dtype   # what BaseModel casts inputs to
        tm.patcher.load_device = torch.device(device)
    return tm


def measure_family(pack, family: str, overrides: dict, side: int, steps: int, repeats: int,
                   device: str = "cpu", dtype: torch.dtype = torch.float32) -> List[dict]:
    tm = _to_device(tiny_models.build(family, seed=0, width=side, height=side, config_overrides=overrides),
                    device, dtype)
    models = {name: tm.patcher if settings is None else patch(pack, tm.patcher, **{"depth": 0.75, **settings})
              for name, settings in CONFIGS}
    copies = [f"uncached copy {i}" for i in range(1, UNCACHED_COPIES)]
    models.update({name: tm.patcher.clone() for name in copies})
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def runner(name: str, model) -> Runner:
        def run(callback):
            def timed_callback(*args):
                sync()  # a step's GPU work belongs to that step
                callback(*args)
            out = sample_tiny(model, tm, steps=steps, cfg=1.0, callback=timed_callback)
            sync()
            return out
        return sampler_runner(model, run)

    cpus = torch.get_num_threads()
    run_lockstep([runner(n, m) for n, m in models.items()], cpus)  # warm-up: first-call allocation, kernels
    rounds: Dict[str, List[Timed]] = {name: [] for name in models}
    with recorded_runs(pack) as reports:
        for _ in range(repeats):
            for name, timed in zip(models, run_lockstep([runner(n, m) for n, m in models.items()], cpus)):
                rounds[name].append(timed)
    base, noise = reference_time([rounds[name] for name in ["uncached"] + copies])
    seconds = {name: clean_seconds(rounds[name]) for name in models}
    rows = []
    for name, model in models.items():
        if name in copies:
            continue
        t = base if name == "uncached" else clean_seconds(rounds[name])
        ideal = record_of(reports, model).ideal_speedup if description_of(model) is not None else 1.0
        rows.append({"family": family, "config": name, "blocks": tm.num_blocks, "seconds": t,
                     "speedup": base / t, "ideal_speedup": ideal, "efficiency": base / t / ideal,
                     "overhead_ms_per_step": (t - base) / steps * 1000 if name == "N=1" else None,
                     "forecast_overhead": t / seconds[FORECAST_OF[name]] - 1 if name in FORECAST_OF else None,
                     "timing_noise": noise if name == "uncached" else None})
    return rows


def main(args) -> int:
    pack = load_pack()
    shapes = {"flux": FULL_FLUX} if args.full_size else CPU_SHAPES
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    steps, repeats = args.steps or 20, args.repeats or 3
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"speed only: {device_name}, {steps} euler steps, cfg 1, depth 0.75, window 0.40-0.95, "
          f"{repeats} lockstep rounds (each step's fastest), {torch.get_num_threads()} thread(s)")
    print(f"{'family':<15}{'blocks':>7}{'config':>13}{'seconds':>10}{'speedup':>9}{'ideal':>8}{'eff':>6}{'overhead/step':>15}")
    rows = []
    for family, (overrides, side) in shapes.items():
        if args.families and family not in args.families:
            continue
        for r in measure_family(pack, family, overrides, side, steps, repeats, args.device, dtype):
            overhead = "" if r["overhead_ms_per_step"] is None else f"{r['overhead_ms_per_step']:+.2f} ms"
            if r["forecast_overhead"] is not None:
                overhead = f"{r['forecast_overhead']:+.1%} vs copy"
            print(f"{family:<15}{r['blocks']:>7}{r['config']:>13}{r['seconds']:>10.3f}{r['speedup']:>8.2f}x"
                  f"{r['ideal_speedup']:>7.2f}x{r['efficiency']:>6.2f}{overhead:>15}", flush=True)
            rows.append({**r, "device": device_name, "threads": torch.get_num_threads(), "steps": steps,
                         "side_px": side, "dtype": str(dtype).replace("torch.", "")})
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {args.json}")
    return 0
