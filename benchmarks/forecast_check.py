"""How much forecasting could add to the calibrated schedules, by the calibrator's own prediction.

`python -m benchmarks.forecast_check [--model wan21|hunyuan_image21] [--sampler euler]` measures the
calibration batch once (the probe of BlockDance Calibrate, calibration classes and seed only), then
for each target speedup searches the exact copy-only plan (what ships today) and the plan that may
also forecast (order 1 over sigma, blockdance_core/forecast_search.py), and prints both predicted
errors and where the forecast plan forecasts. It predicts; it does not sample the plans (the
benchmark does, once forecasts run in the engine), so its numbers are the search's objective, the
weighted relative L1 error of what the deeper blocks receive.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from . import protocol
from .calibrate_reference import calibration_inputs
from .comfy_env import load_pack
from .tiny_models import load_via_unet_loader

TARGETS = (1.5, 2.0, 3.0, 4.0, 5.0)


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--sampler", default=protocol.SAMPLERS[0])
    parser.add_argument("--targets", type=float, nargs="*", default=list(TARGETS))
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pack = load_pack()
    core, nodes = pack.blockdance_core, pack.nodes
    from importlib import import_module
    forecast_search = import_module(f"{pack.__name__}.blockdance_core.forecast_search")
    ref_model = models.get(args.model)
    model = load_via_unet_loader(ref_model.weights)
    positive, negative, latent = calibration_inputs(ref_model, ref_model.load_class_contexts())
    sampling = nodes.calibration.Sampling(positive, negative, latent, protocol.CALIBRATION_SEED, protocol.STEPS,
                                          protocol.CFG, args.sampler, protocol.SCHEDULER)
    cuts, options = nodes.calibration.search_options(model, "auto")
    _, measurement = nodes.calibration.measure(model, sampling, cuts)
    print(f"{ref_model.label}, {args.sampler}, {protocol.STEPS} steps: predicted error (weighted relative L1 of the "
          "deeper blocks' input), copy-only plan vs plan that may forecast (order 1 over sigma)")
    print(f"{'target':>7} {'copy':>9} {'forecast':>9} {'ratio':>6}  reuse steps forecast / all  search s")
    for target in args.targets:
        try:
            copy = core.search.search(measurement, target, options)
        except core.search.BudgetUnreachable:
            print(f"{target:>6.2f}x  unreachable with the measured cuts")
            continue
        started = time.perf_counter()
        plan = forecast_search.search_with_forecasts(measurement, target, options)
        seconds = time.perf_counter() - started
        labels = plan.forecasts()
        forecasting = sum(1 for f in labels if f and f != "copy")
        reusing = sum(1 for f in labels if f)
        print(f"{target:>6.2f}x {copy.predicted_error:>9.4f} {plan.predicted_error:>9.4f} "
              f"{plan.predicted_error / max(copy.predicted_error, 1e-12):>6.2f}  {forecasting:>3} / {reusing:<3}"
              f"{'':>17}{seconds:.1f}")
        print("         forecast: " + "".join("F" if f not in ("", "copy") else ("R" if f else "C") for f in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
