"""Calibrating a schedule on the user's own model and sampling settings.

1. One uncached sampling run with the given KSampler inputs, watched by the probe at candidate cut
   points (blockdance_core.probe): its output is the reference.
2. The exact search for the target speedup over the measured reuse errors (blockdance_core.search;
   with `forecast`, blockdance_core.forecast_search, where a group may also extrapolate).
3. Two checks against the reference, in latent space: the schedule itself, and the uncached model
   at as many steps as cost the same or less. The report says which one is closer, so a user is never
   steered into the worse option (on some models and samplers no reuse placement beats fewer steps).

A batch latent (several seeds) or several conditionings are measured together: the errors are
averaged over every row.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from ..blockdance_core import MODES
from ..blockdance_core.budget import fewer_steps
from ..blockdance_core.schedule import Schedule, SchedulePolicy
from ..blockdance_core.heatmap import render
from ..blockdance_core.policy import ModelFingerprint
from ..blockdance_core.probe import Measurement, ProbePolicy, candidate_cuts
from ..blockdance_core.quality import latent_psnr
from ..blockdance_core.forecast import Forecast
from ..blockdance_core.forecast_search import search_with_forecasts
from ..blockdance_core.search import Plan, search
from .families import detect
from .families.base import delta_reaches
from .patcher import apply_blockdance, model_fingerprint
from .telemetry import receiving

MODE_CHOICES = ("auto", *MODES)
FORECAST_CHOICES = ("copy", "taylor1")   # what the search may choose for a group besides a copy
RANGE_CHOICES = ("front", "front and rear")   # which block ranges a group may skip (Delta-DiT's rear ranges)


@dataclass
class Sampling:
    """The KSampler inputs a calibration runs with."""
    positive: list
    negative: list
    latent: dict
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str

    def run(self, model, steps: Optional[int] = None, on_step: Optional[Callable[[], None]] = None) -> torch.Tensor:
        import comfy.sample
        latent_image = comfy.sample.fix_empty_latent_channels(model, self.latent["samples"])
        noise = comfy.sample.prepare_noise(latent_image, self.seed, self.latent.get("batch_index"))
        callback = (lambda *args: on_step()) if on_step is not None else None
        return comfy.sample.sample(model, noise, steps or self.steps, self.cfg, self.sampler_name, self.scheduler,
                                   self.positive, self.negative, latent_image, noise_mask=self.latent.get("noise_mask"),
                                   callback=callback, disable_pbar=True, seed=self.seed)


@dataclass
class Calibration:
    schedule: Schedule
    measurement: Measurement
    plan: Plan
    reference: torch.Tensor
    scheduled_psnr: float     # the schedule's output against the reference (latent space, dB)
    fewer_steps: int
    fewer_psnr: float
    heatmap: torch.Tensor     # [1, H, W, 3]
    seconds: dict             # measuring / search / checks

    @property
    def report(self) -> str:
        s, steps = self.schedule, self.schedule.calibration["steps"]
        verdict = (f"the schedule is closer to the uncached result than {self.fewer_steps} steps at the same cost: "
                   "use it" if self.scheduled_psnr >= self.fewer_psnr else
                   f"lowering steps to {self.fewer_steps} is closer to the uncached result at the same cost: "
                   "on this model and sampler, prefer that over this schedule")
        return "\n".join([
            f"BlockDance schedule {s.name!r}: target {s.target_speedup:.2f}x, ideal {s.predicted_speedup:.2f}x "
            f"({len(s.reuse_steps)}/{steps} steps reuse), modes {'/'.join(s.modes) or 'none'}"
            + (f", forecasts {'/'.join(s.forecasts)} on {sum(1 for x in s.steps if x.forecast)} of them" if s.forecasts else ""),
            s.describe(),
            f"check on the calibration batch (latent PSNR against the uncached run): schedule "
            f"{_db(self.scheduled_psnr)}; {self.fewer_steps} steps instead of {steps} ({steps / self.fewer_steps:.2f}x) "
            f"{_db(self.fewer_psnr)}",
            f"=> {verdict}",
            f"calibration took {sum(self.seconds.values()):.1f} s: " + ", ".join(
                f"{name} {value:.1f} s" for name, value in self.seconds.items()),
        ])


def _db(value: float) -> str:
    return "identical" if math.isinf(value) else f"{value:.1f} dB"


def search_options(model, mode: str, ranges: str = "front") -> Tuple[Tuple[int, ...], Tuple[tuple, ...]]:
    """The cuts to measure and the options the search may use: (cut, mode) prefixes, delta only where
    the block-0 input maps onto the cut's layout; with rear ranges also (last, "delta", start) for every
    measured start whose range stays within the last block's stage (blockdance.search.option_range)."""
    from ..blockdance_core import BlockDanceConfigError
    if mode not in MODE_CHOICES:
        raise BlockDanceConfigError(f"mode={mode!r}; allowed: {', '.join(MODE_CHOICES)}")
    if ranges not in RANGE_CHOICES:
        raise BlockDanceConfigError(f"ranges={ranges!r}; allowed: {', '.join(RANGE_CHOICES)}")
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect(diffusion_model)
    blocks = family.blocks(diffusion_model)
    cuts = candidate_cuts(len(blocks))
    modes = MODES if mode == "auto" else (mode,)
    options = tuple((c, m) for m in modes for c in cuts if m == "blockdance" or delta_reaches(blocks, c))
    if ranges != "front" and "delta" in modes:
        last, stage = len(blocks), blocks[-1][0]
        options += tuple((last, "delta", a) for a in cuts if a < last and blocks[a - 1][0] is stage)
    return cuts, options


def measure(model, sampling: Sampling, cuts, on_step: Optional[Callable[[], None]] = None):
    """One uncached sampling run watched at `cuts` (the probe computes every block): its output, the
    reference a schedule is checked against, and the measurement (blockdance_core.probe.Measurement)."""
    probed, receiver = receiving(apply_blockdance(model, ProbePolicy(tuple(cuts)), "probe"))
    reference = sampling.run(probed, on_step=on_step)
    return reference, receiver.last.record.result.measurement()


def calibrate(model, sampling: Sampling, target_speedup: float, mode: str = "auto", name: str = "calibrated",
              on_step: Optional[Callable[[], None]] = None, forecast: str = "copy",
              ranges: str = "front") -> Calibration:
    if forecast not in FORECAST_CHOICES:
        from ..blockdance_core import BlockDanceConfigError
        raise BlockDanceConfigError(f"forecast={forecast!r}; allowed: {', '.join(FORECAST_CHOICES)}")
    cuts, options = search_options(model, mode, ranges)
    fits = model_fingerprint(model)
    clock = time.perf_counter()
    reference, measurement = measure(model, sampling, cuts, on_step)
    seconds = {"measuring run": time.perf_counter() - clock}
    clock = time.perf_counter()
    if forecast == "copy":
        plan = search(measurement, target_speedup, options)
    else:
        plan = search_with_forecasts(measurement, target_speedup, options, Forecast.parse(forecast))
    schedule = _schedule(name, fits, measurement, plan, sampling, mode, forecast, ranges)
    seconds["search"] = time.perf_counter() - clock
    clock = time.perf_counter()
    scheduled = sampling.run(apply_blockdance(model, SchedulePolicy(schedule), "schedule"), on_step=on_step)
    fewer = fewer_steps(sampling.steps, plan.ideal_speedup)
    fewer_out = sampling.run(model, steps=fewer, on_step=on_step)
    seconds["checks (schedule, fewer steps)"] = time.perf_counter() - clock
    scheduled_psnr, fewer_psnr = latent_psnr(scheduled, reference), latent_psnr(fewer_out, reference)
    title = [f"{name}: {plan.ideal_speedup:.2f}x, predicted error {plan.predicted_error:.3g}",
             f"latent PSNR: schedule {_db(scheduled_psnr)}, {fewer} steps (same cost) {_db(fewer_psnr)}"]
    heatmap = render(measurement.step_change(), measurement.cuts, plan.actions(), title=title,
                     num_blocks=measurement.num_blocks)
    return Calibration(schedule, measurement, plan, reference, scheduled_psnr, fewer, fewer_psnr, heatmap, seconds)


def _schedule(name: str, fits: ModelFingerprint, measurement: Measurement, plan: Plan, sampling: Sampling,
              mode: str, forecast: str = "copy", ranges: str = "front") -> Schedule:
    """The schedule of the searched plan, naming the model it was measured on: its family, the block
    count and width the measurement saw, and from the model's fingerprint (`fits`, what patching
    compares) the latent's channels and the conditioning's width."""
    rows = int(sampling.latent["samples"].shape[0])
    return Schedule.from_plan(name, fits.family, measurement.width, measurement.timeline, plan, {
        "steps": sampling.steps, "sampler": sampling.sampler_name, "scheduler": sampling.scheduler,
        "cfg": sampling.cfg, "seed": sampling.seed, "batch": rows, "mode": mode, "cuts": list(measurement.cuts),
        **({"forecast": forecast} if forecast != "copy" else {}), **({"ranges": ranges} if ranges != "front" else {})},
        latent_channels=fits.latent_channels, cond_width=fits.cond_width)
