"""Feature-forecasting peers, written from their papers' and authors' descriptions (their code is
GPL or unlicensed; none of it is used here), run on the pack's engine so that every row shares one
block-skipping path and one clock.

Both forecast the output of the last block (before the head, which still runs with the current
step's embedding) on the steps they skip, over the step index, as their authors do:

- Spectrum (Han et al., CVPR 2026, arXiv 2603.01623; authors' defaults): the first `warmup` = 5 steps
  compute; after that a step computes when (steps skipped since the last computed one + 1) is a
  multiple of floor(window), the window starting at 2 and growing by `alpha` at every computed step
  (the speed knob: a larger alpha computes less). A skipped step gets a ridge fit (lambda 0.1) of
  Chebyshev polynomials T_0..T_4 over every computed step so far, the step range mapped onto
  [-1, 1]. No tail steps are forced.
- TaylorSeer (Liu et al., ICCV 2025, arXiv 2503.06923): the first `first_enhance` = 3 steps compute,
  then every `interval`-th step (the speed knob, fresh_threshold in its ComfyUI port); a skipped step
  gets the order-2 Taylor extrapolation (the order the issue and the ComfyUI port use; the authors'
  FLUX/Wan default is 1) from the last three computed steps. The authors divide every difference by
  the latest spacing; this uses the Newton form on the real spacing (exact for quadratics).
"""
from __future__ import annotations

import math
from typing import List

SPECTRUM_ALPHAS = (0.0, 0.25, 0.75, 1.5, 3.0, 6.0)   # 0.75 is the authors' default
TAYLORSEER_INTERVALS = (2, 3, 4, 6, 8)                # 6 is the ComfyUI port's default


def spectrum_computes(steps: int, alpha: float, warmup: int = 5, window: float = 2.0) -> List[bool]:
    """Which steps Spectrum computes (True) for a run of `steps`."""
    out, skipped = [], 0
    for k in range(steps):
        if k < warmup:
            out.append(True)
            continue
        compute = (skipped + 1) % max(1, math.floor(window)) == 0
        out.append(compute)
        if compute:
            skipped, window = 0, window + alpha
        else:
            skipped += 1
    return out


def taylorseer_computes(steps: int, interval: int, first_enhance: int = 3) -> List[bool]:
    """Which steps TaylorSeer computes: the first `first_enhance`, then every `interval`-th after them."""
    return [k < first_enhance or (k - first_enhance + 1) % interval == 0 for k in range(steps)]


def spectrum_forecast(pack, steps: int):
    return pack.blockdance_core.forecast.Forecast("chebyshev", 4, window=steps, over="step", ridge=0.1)


def taylorseer_forecast(pack):
    return pack.blockdance_core.forecast.Forecast("taylor", 2, over="step")


def patch_peer(pack, model, computes: List[bool], forecast):
    """`model` with the last block's output forecast on the steps `computes` leaves out."""
    policy = pack.blockdance_core.MaskPolicy(tuple(not c for c in computes), depth=1.0, mode="blockdance",
                                            forecast=forecast, by_step=True)
    return pack.nodes.patcher.apply_blockdance(model, policy, "blockdance")
