"""Which rho serves BlockDance-Ada? The best static plan that may only reuse from rho on.

`python -m benchmarks.rho_check`: for each reference model and sampler, the calibration measurement
(protocol.py's calibration digits) is searched for plans that reuse no step before rho (a policy that
decides at rho cannot), and each plan is evaluated on the evaluation digits (PSNR against the uncached
output). This bounds what any policy deciding at rho can reach with the calibration's error model.
"""
from __future__ import annotations

import sys

import torch

from . import protocol
from .metrics import psnr_per_image

RHOS = (0.0, 0.2, 0.4)


def main(argv=None) -> int:
    from . import run
    from .reference import models
    torch.set_num_threads(1)
    for name in models.MODELS:
        ref = models.get(name)
        pack, model, contexts = run.load_reference(ref)
        import comfy.sample
        core = pack.blockdance_core
        family = pack.nodes.families.detect(model.get_model_object("diffusion_model")).name
        labels = torch.tensor(protocol.EVAL_CLASSES).repeat_interleave(3)
        work = run.make_workload(ref, model, contexts, labels, protocol.EVAL_SEED)
        for sampler in protocol.SAMPLERS:
            def sample(m):
                return ref.from_latent(comfy.sample.sample(
                    m, work.noise, protocol.STEPS, protocol.CFG, sampler, protocol.SCHEDULER, work.positive,
                    work.negative, work.latent, disable_pbar=True, seed=protocol.EVAL_SEED))
            measurement = run.measure_calibration(pack, model, ref, sampler, protocol.STEPS)
            _, options = pack.nodes.calibration.search_options(model, "auto")
            base = sample(model)
            for target in (1.5, 2.0, 3.0):
                cells = []
                for rho in RHOS:
                    earliest = core.ada.rho_step(measurement.timeline.positions, rho)
                    try:
                        plan = core.search.search(measurement, target, options, earliest=earliest)
                    except core.search.BudgetUnreachable:
                        cells.append(f"rho {rho}: unreachable")
                        continue
                    schedule = core.schedule.Schedule.from_plan(f"rho{rho}", family, measurement.width,
                                                                  measurement.timeline, plan)
                    out = sample(pack.nodes.patcher.apply_blockdance(model, core.schedule.SchedulePolicy(schedule), "s"))
                    cells.append(f"rho {rho}: {float(psnr_per_image(out, base).mean()):.1f} dB")
                print(f"{name:<16}{sampler:<16}{target:>4}x  " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
