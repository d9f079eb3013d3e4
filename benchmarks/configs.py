"""What every benchmark configuration is and how it is sampled, timed in lockstep and scored; shared by
the main table (benchmarks/run.py) and the per-sample rows (benchmarks/per_instance.py)."""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from . import protocol
from .lockstep import Runner, Timed, clean_seconds, reference_time, run_lockstep, sampler_runner
from .measure import BlockCounter
from .metrics import psnr_per_image, quality, ssim


@dataclass
class Config:
    method: str
    params: dict
    steps: int
    patched: object = None            # the ModelPatcher to sample with
    block_calls: int = 0        # blocks executed in the fidelity run
    timed_block_calls: int = 0  # blocks executed in each timed run
    rounds: List[Timed] = field(default_factory=list)   # one timed run per lockstep round
    output: Optional[torch.Tensor] = None
    copies: List["Config"] = field(default_factory=list)  # baseline: further uncached runs per round
    predicted_error: Optional[float] = None   # the calibration error model's score of this plan

    @property
    def clean_seconds(self) -> float:
        return clean_seconds(self.rounds)

    @property
    def wall_seconds(self) -> float:
        return statistics.median(r.seconds for r in self.rounds)

    def reference_seconds(self) -> Tuple[float, float, float]:
        """Baseline: clean seconds (mean over this run and its copies), wall seconds (median over
        all their rounds) and the noise floor (largest gap of one copy's clean time from the mean)."""
        runs = [self] + self.copies
        clean, noise = reference_time([c.rounds for c in runs])
        return clean, statistics.median(r.seconds for c in runs for r in c.rounds), noise

    @property
    def label(self) -> str:
        return self.method + "".join(f" {k}={v}" for k, v in self.params.items() if k not in ("start_percent", "end_percent"))


@dataclass
class Workload:
    """What one sampling run gets: initial noise, empty latent and conditioning for a batch."""
    noise: torch.Tensor
    latent: torch.Tensor
    positive: list
    negative: list


def make_workload(ref_model, model, contexts, labels, seed: int) -> Workload:
    import comfy.sample
    latent = comfy.sample.fix_empty_latent_channels(model, ref_model.empty_latent(len(labels)))
    null = ref_model.null_class
    return Workload(comfy.sample.prepare_noise(latent, seed), latent, [[contexts[labels], {}]],
                    [[contexts[null:null + 1], {}]])


def sample(cfg: Config, work: Workload, sampler: str, seed: int, callback=None) -> torch.Tensor:
    import comfy.sample
    return comfy.sample.sample(cfg.patched, work.noise, cfg.steps, protocol.CFG, sampler, protocol.SCHEDULER,
                               work.positive, work.negative, work.latent, disable_pbar=True, seed=seed,
                               callback=callback)


def time_in_lockstep(configs: List[Config], sampler: str, timing: Workload, seed: int, rounds: int,
                     diffusion_model: torch.nn.Module, containers: Tuple[str, ...]) -> None:
    """Time every configuration in `rounds` lockstep rounds (fresh random turn order each round)
    and count the blocks each timed run executed (only the run holding the turn computes, so
    the blocks run between two turns belong to it). Sampling is deterministic, so each
    configuration must give the same output and block count in every round; that is checked,
    and it also shows the interleaving left every run undisturbed."""
    order = random.Random(seed)
    counter = BlockCounter(diffusion_model, list(containers))
    tally = {"active": None, "mark": 0, "calls": {}}

    def settle() -> None:
        total = sum(counter.counts)
        if tally["active"] is not None:
            key = id(tally["active"])
            tally["calls"][key] = tally["calls"].get(key, 0) + total - tally["mark"]
        tally["mark"] = total

    def runner(cfg: Config) -> Runner:
        def on_resume():
            settle()
            tally["active"] = cfg

        return sampler_runner(cfg.patched, lambda callback: sample(cfg, timing, sampler, seed, callback), on_resume)

    outputs: Dict[int, torch.Tensor] = {}
    try:
        for r in range(rounds):
            shuffled = order.sample(configs, len(configs))
            tally.update(active=None, calls={})
            results = run_lockstep([runner(c) for c in shuffled], torch.get_num_threads())
            settle()
            for cfg, timed in zip(shuffled, results):
                first = outputs.setdefault(id(cfg), timed.output)
                calls = tally["calls"].get(id(cfg), 0)
                if not torch.equal(first, timed.output) or (r and calls != cfg.timed_block_calls):
                    raise RuntimeError(f"{cfg.label} gave a different output or block count in another timing round")
                timed.output = None
                cfg.timed_block_calls = calls
                cfg.rounds.append(timed)
    finally:
        counter.close()


def evaluate(configs, ref_model, sampler, labels, classifier, real_features) -> List[dict]:
    base = configs[0]
    base_images = ref_model.from_latent(base.output)
    base_clean, base_wall, noise = base.reference_seconds()
    rows = []
    for cfg in configs:
        images = ref_model.from_latent(cfg.output)
        psnr = psnr_per_image(images, base_images)
        ideal = base.timed_block_calls / cfg.timed_block_calls  # the work of the runs that were timed
        clean, wall = (base_clean, base_wall) if cfg is base else (cfg.clean_seconds, cfg.wall_seconds)
        speedup = base_clean / clean
        rows.append({
            "model": ref_model.name, "method": cfg.method, "sampler": sampler, "params": cfg.params,
            "speedup": round(speedup, 4), "ideal_speedup": round(ideal, 4), "efficiency": round(speedup / ideal, 4),
            "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()), "ssim": round(ssim(images, base_images), 5),
            **{k: round(v, 4) for k, v in quality(images, labels, classifier, real_features).items()},
            "speedup_wall": round(base_wall / wall, 4), "seconds": round(clean, 4), "label": cfg.label,
            # EasyCache / LazyCache decide per batch: the fidelity batch may skip other steps
            "ideal_speedup_fidelity": round(base.block_calls / cfg.block_calls, 4),
            "predicted_error": None if cfg.predicted_error is None else round(cfg.predicted_error, 6),
        })
    rows[0]["timing_noise"] = round(noise, 4)
    return rows
