"""Amortised calibration on the user's model: probe runs on a few sampling settings make a library
(blockdance_core/amortised.py) that gives any other setting a schedule with no run of its own.

The settings are text, one per line or separated by ';': `steps sampler scheduler cfg`, e.g.
`25 euler simple 3.5; 40 dpmpp_2m karras 5`. Each probe run is an uncached sampling run of the given
conditioning and latent (as BlockDance Calibrate's measuring run). The reuse range (cut, mode) is
the one the search uses most at 1.5-3x over the probed settings, unless given.
"""
from __future__ import annotations

import time
from typing import Callable, List, Optional, Sequence, Tuple

from ..blockdance_core import amortised
from ..blockdance_core.search import most_used_option
from .calibration import Sampling, measure, search_options
from .families import detect
from .timeline import timeline_of

VOTE_TARGETS = (1.5, 2.0, 3.0)
Setting = Tuple[int, str, str, float]   # steps, sampler, scheduler, cfg


def parse_settings(text: str) -> List[Setting]:
    """`steps sampler scheduler cfg` per line or ';'-separated; a clear error names the bad one."""
    import comfy.samplers
    out = []
    for part in str(text).replace(";", "\n").splitlines():
        if not part.strip():
            continue
        fields = part.split()
        try:
            if len(fields) != 4:
                raise ValueError("four fields")
            steps, sampler, scheduler, cfg = int(fields[0]), fields[1], fields[2], float(fields[3])
            if not 2 <= steps <= 10000 or not 0.0 <= cfg <= 100.0:
                raise ValueError("range")
        except ValueError:
            raise ValueError(f"setting {part.strip()!r}: write `steps sampler scheduler cfg`, e.g. "
                             "'25 euler simple 3.5' (steps 2-10000, cfg 0-100)") from None
        if sampler not in comfy.samplers.SAMPLER_NAMES:
            raise ValueError(f"setting {part.strip()!r}: unknown sampler {sampler!r}")
        if scheduler not in comfy.samplers.SCHEDULER_NAMES:
            raise ValueError(f"setting {part.strip()!r}: unknown scheduler {scheduler!r}")
        out.append((steps, sampler, scheduler, cfg))
    if not out:
        raise ValueError("no settings given: at least one `steps sampler scheduler cfg`")
    return out


def timeline_for(model, steps: int, sampler: str, scheduler: str):
    """A run's timeline, known before sampling: the sampler's sigmas placed as the engine places them."""
    import comfy.samplers
    sigmas = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler, scheduler=scheduler,
                                     denoise=1.0, model_options=model.model_options).sigmas
    return timeline_of(sigmas, model.get_model_object("model_sampling"))


def build(model, positive, negative, latent: dict, seed: int, settings: Sequence[Setting],
          reuse_range: Optional[Tuple[int, str]] = None,
          progress: Optional[Callable[[int, str], None]] = None) -> amortised.Library:
    """Probe every setting and keep its reuse errors at the reuse range (voted when not given)."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect(diffusion_model)
    cuts, options = search_options(model, "auto")
    measured, started = [], time.perf_counter()
    for i, (steps, sampler, scheduler, cfg) in enumerate(settings):
        sampling = Sampling(positive, negative, latent, seed, steps, cfg, sampler, scheduler)
        measured.append((f"{sampler} {steps} {scheduler} cfg {cfg:g}", sampler, scheduler, cfg,
                         measure(model, sampling, (reuse_range[0],) if reuse_range else cuts)[1]))
        if progress is not None:
            progress(i + 1, measured[-1][0])
    if reuse_range is None:
        reuse_range = most_used_option([m for *_, m in measured], VOTE_TARGETS, options) or (cuts[-1], "delta")
    cut, mode = reuse_range
    entries = [amortised.entry_from(name, sampler, scheduler, cfg, m, cut, mode)
               for name, sampler, scheduler, cfg, m in measured]
    library = amortised.Library(family.name, len(family.blocks(diffusion_model)), measured[-1][-1].width, cut, mode,
                                entries, training={"settings": len(entries), "seed": seed,
                                                   "rows": int(latent["samples"].shape[0]),
                                                   "seconds": round(time.perf_counter() - started, 1)})
    library.fit_bandwidth()
    return library
