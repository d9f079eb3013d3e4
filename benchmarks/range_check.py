"""Does letting the calibrator skip rear block ranges (Delta-DiT) make schedules more faithful?

`python -m benchmarks.range_check [--model NAME] [--sampler euler] [--targets 1.5 2 3]`: for each
target the reference model is calibrated twice with BlockDance Calibrate on the calibration batch
(protocol.py), once with front ranges only and once with `ranges = front and rear`, and both schedules
are evaluated on the evaluation digits against the uncached output (PSNR of the decoded digits).
Prints which ranges the second one picked, its predicted error beside the first's, and both PSNRs.
"""
from __future__ import annotations

import argparse
import sys

from . import protocol
from .held_out import held_out
from .measure import node, record_of, recorded_runs
from .metrics import psnr_per_image


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--targets", type=float, nargs="*", default=[1.5, 2.0, 3.0])
    parser.add_argument("--per-class", type=int, default=2)
    args = parser.parse_args(argv)
    h = held_out(args.model, args.per_class)
    pack, model, ref_model, labels = h.pack, h.model, h.ref_model, h.labels
    positive, negative, latent = h.positive, h.negative, h.latent
    import comfy.sample

    def run(m):
        with recorded_runs(pack) as reports:
            out = comfy.sample.sample(m, h.noise, protocol.STEPS, protocol.CFG, args.sampler, protocol.SCHEDULER,
                                      h.eval_positive, negative, h.eval_latent, disable_pbar=True,
                                      seed=protocol.EVAL_SEED)
        return ref_model.from_latent(out.detach()), (record_of(reports, m) if reports else None)

    base, _ = run(model)
    print(f"{ref_model.label}, {args.sampler}, {protocol.STEPS} steps; calibrated on classes "
          f"{protocol.CALIBRATION_CLASSES}, evaluated on {len(labels)} digits of classes "
          f"{protocol.EVAL_CLASSES[0]}-{protocol.EVAL_CLASSES[-1]}")
    print(f"{'target':>7}{'front: ideal':>14}{'pred':>8}{'PSNR':>7}{'front+rear: ideal':>19}{'pred':>8}{'PSNR':>7}"
          "  rear-range reuse steps / reuse steps, ranges picked")
    for target in args.targets:
        cells = []
        for ranges in ("front", "front and rear"):
            schedule, _, _ = node(pack, "BlockDanceCalibrate").execute(
                model, positive, negative, latent, seed=protocol.CALIBRATION_SEED, steps=protocol.STEPS,
                cfg=protocol.CFG, sampler_name=args.sampler, scheduler=protocol.SCHEDULER, mode="auto",
                target_speedup=target, ranges=ranges).result
            patched = node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95,
                                                            schedule=schedule).result[0]
            out, record = run(patched)
            cells.append((schedule, record, float(psnr_per_image(out, base).mean())))
        (front, fr, fp), (both, br, bp) = cells
        rear = sum(1 for s in both.steps if s.kind == "reuse" and s.start)
        picked = ", ".join(f"{a}-{c - 1} {m}" for a, c, m in both.ranges if a)
        print(f"{target:>6g}x{fr.ideal_speedup:>13.2f}x{front.predicted_error:>8.3f}{fp:>7.1f}"
              f"{br.ideal_speedup:>18.2f}x{both.predicted_error:>8.3f}{bp:>7.1f}  {rear}/{len(both.reuse_steps)}"
              f"{', rear ' + picked if picked else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
