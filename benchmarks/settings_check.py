"""Does calibration still beat fewer steps on sampling settings no issue names?

`python -m benchmarks.settings_check [--model NAME] [--target 2.0]`: for each setting below the
reference model is calibrated with BlockDance Calibrate on the calibration batch (protocol.py), then
evaluated on the evaluation digits against the uncached output of that setting: the calibrated
schedule, the uncached model at as many steps as cost the same or less, and the 30-step euler
schedule shipped for the benchmark used as is (does a schedule transfer to another setting?).
Fidelity is the PSNR of the decoded digits. Ideal speedups are from block executions.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from . import protocol
from .calibrate_reference import calibration_inputs, schedule_path
from .comfy_env import load_pack
from .measure import node, record_of, recorded_runs
from .metrics import psnr_per_image
from .tiny_models import load_via_unet_loader

SETTINGS = (  # name, steps, sampler, scheduler, cfg
    ("euler 20 steps", 20, "euler", "simple", 2.0),
    ("euler 50 steps", 50, "euler", "simple", 2.0),
    ("euler, beta scheduler", 30, "euler", "beta", 2.0),
    ("euler, karras scheduler", 30, "euler", "karras", 2.0),
    ("euler, cfg 1 (no uncond)", 30, "euler", "simple", 1.0),
    ("euler, cfg 4", 30, "euler", "simple", 4.0),
    ("dpmpp_2m", 30, "dpmpp_2m", "simple", 2.0),
    ("uni_pc", 20, "uni_pc", "simple", 2.0),
    ("heun 15 steps", 15, "heun", "simple", 2.0),
    ("dpmpp_2s_ancestral", 20, "dpmpp_2s_ancestral", "simple", 2.0),
)


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--target", type=float, default=2.0)
    parser.add_argument("--per-class", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pack = load_pack()
    import comfy.sample
    ref_model = models.get(args.model)
    model = load_via_unet_loader(ref_model.weights)
    contexts = ref_model.load_class_contexts()
    positive, negative, latent = calibration_inputs(ref_model, contexts)
    labels = torch.tensor(protocol.EVAL_CLASSES).repeat_interleave(args.per_class)
    eval_latent = comfy.sample.fix_empty_latent_channels(model, ref_model.empty_latent(len(labels)))
    noise = comfy.sample.prepare_noise(eval_latent, protocol.EVAL_SEED)
    eval_pos, eval_neg = [[contexts[labels], {}]], negative
    Schedule = pack.blockdance_core.schedule.Schedule
    shipped = Schedule.load(schedule_path(args.model, "euler", args.target))
    patch_with = lambda s: node(pack, "BlockDancePatch").execute(model, "blockdance", 0.75, 2, 0.4, 0.95,
                                                                 schedule=s).result[0]

    def run(m, steps, sampler, scheduler, cfg):
        with recorded_runs(pack) as reports:
            out = comfy.sample.sample(m, noise, steps, cfg, sampler, scheduler, eval_pos, eval_neg, eval_latent,
                                      disable_pbar=True, seed=protocol.EVAL_SEED)
        return ref_model.from_latent(out.detach()), (record_of(reports, m) if reports else None)

    print(f"{ref_model.label}, target {args.target:g}x, calibrated on classes {protocol.CALIBRATION_CLASSES}, "
          f"evaluated on {len(labels)} digits of classes {protocol.EVAL_CLASSES[0]}-{protocol.EVAL_CLASSES[-1]}")
    print(f"{'setting':<28}{'calibrated':>20}{'fewer steps':>22}{'shipped 30-step euler':>26}  winner")
    for name, steps, sampler, scheduler, cfg in SETTINGS:
        schedule, _, _ = node(pack, "BlockDanceCalibrate").execute(
            model, positive, negative, latent, seed=protocol.CALIBRATION_SEED, steps=steps, cfg=cfg,
            sampler_name=sampler, scheduler=scheduler, mode="auto", target_speedup=args.target).result
        base, _ = run(model, steps, sampler, scheduler, cfg)
        out, record = run(patch_with(schedule), steps, sampler, scheduler, cfg)
        fewer = pack.blockdance_core.budget.fewer_steps(steps, record.ideal_speedup)
        fewer_out, _ = run(model, fewer, sampler, scheduler, cfg)
        moved, moved_record = run(patch_with(shipped), steps, sampler, scheduler, cfg)
        cal = float(psnr_per_image(out, base).mean())
        few = float(psnr_per_image(fewer_out, base).mean())
        mov = float(psnr_per_image(moved, base).mean())
        print(f"{name:<28}{f'{record.ideal_speedup:.2f}x {cal:5.1f} dB':>20}{f'{fewer} st {steps / fewer:.2f}x {few:5.1f} dB':>22}"
              f"{f'{moved_record.ideal_speedup:.2f}x {mov:5.1f} dB':>26}  {'calibrated' if cal > few else 'fewer steps'}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
