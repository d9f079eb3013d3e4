"""Make the shipped schedules for a reference model with the BlockDance Calibrate node itself.

`python -m benchmarks.calibrate_reference [--model wan21|hunyuan_image21]` calibrates on the
calibration classes and seed (benchmarks/protocol.py; the benchmark never evaluates on them), for
each sampler and target speedup, writes benchmarks/reference/schedules/<model>_<sampler>_<target>x.json
(`--forecast taylor1`: ..._taylor1.json; `--ranges "front and rear"`: ..._ranges.json),
and prints each report and what calibrating cost beside one uncached sampling run of the same batch.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

from . import protocol
from .comfy_env import load_pack
from .measure import node
from .tiny_models import load_via_unet_loader

SCHEDULE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "schedules")


def schedule_path(model_name: str, sampler: str, target: float, forecast: str = "copy", ranges: str = "front") -> str:
    """Where a shipped schedule lives: a suffix per Calibrate input that is not its default."""
    suffix = ("" if forecast == "copy" else f"_{forecast}") + ("" if ranges == "front" else "_ranges")
    return os.path.join(SCHEDULE_DIR, f"{model_name}_{sampler}_{target:g}x{suffix}.json")


def calibration_inputs(ref_model, contexts):
    labels = torch.tensor(protocol.CALIBRATION_CLASSES).repeat_interleave(protocol.CALIBRATION_PER_CLASS)
    positive = [[contexts[labels], {}]]
    negative = [[contexts[ref_model.null_class:ref_model.null_class + 1], {}]]
    return positive, negative, {"samples": ref_model.empty_latent(len(labels))}


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--targets", type=float, nargs="*", default=None,
                        help="default: the shipped targets (with --forecast: protocol.FORECAST_TARGETS)")
    parser.add_argument("--forecast", default="copy", choices=("copy", "taylor1"),
                        help="Calibrate's forecast input: taylor1 lets the search forecast too (files end _taylor1)")
    parser.add_argument("--ranges", default="front", choices=("front", "front and rear"),
                        help="Calibrate's ranges input: 'front and rear' lets the search skip rear block ranges "
                             "(Delta-DiT; files end _ranges)")
    parser.add_argument("--samplers", nargs="*", default=list(protocol.SAMPLERS))
    args = parser.parse_args(argv)
    if args.targets is None:
        args.targets = list(protocol.FORECAST_TARGETS if args.forecast != "copy" else
                            protocol.RANGE_TARGETS if args.ranges != "front" else protocol.SCHEDULE_TARGETS)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pack = load_pack()
    ref_model = models.get(args.model)
    model = load_via_unet_loader(ref_model.weights)
    positive, negative, latent = calibration_inputs(ref_model, ref_model.load_class_contexts())
    calibrate = node(pack, "BlockDanceCalibrate")
    sampling = pack.nodes.calibration.Sampling(positive, negative, latent, protocol.CALIBRATION_SEED, protocol.STEPS,
                                               protocol.CFG, args.samplers[0], protocol.SCHEDULER)
    started = time.perf_counter()
    sampling.run(model)
    uncached = time.perf_counter() - started
    os.makedirs(SCHEDULE_DIR, exist_ok=True)
    print(f"{ref_model.label}: one uncached run of the calibration batch ({latent['samples'].shape[0]} samples, "
          f"{protocol.STEPS} steps) takes {uncached:.1f} s")
    for sampler in args.samplers:
        for target in args.targets:
            started = time.perf_counter()
            schedule, _, report = calibrate.execute(
                model, positive, negative, latent, seed=protocol.CALIBRATION_SEED, steps=protocol.STEPS,
                cfg=protocol.CFG, sampler_name=sampler, scheduler=protocol.SCHEDULER, mode="auto",
                target_speedup=target, forecast=args.forecast, ranges=args.ranges).result
            seconds = time.perf_counter() - started
            path = schedule_path(args.model, sampler, target, args.forecast, args.ranges)
            dataclasses.replace(schedule, name=os.path.splitext(os.path.basename(path))[0]).save(path)
            print(f"\n[{sampler} {target:g}x] {seconds:.1f} s = {seconds / uncached:.2f} uncached runs; wrote {path}")
            print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
