"""Where a run's steps sit on the model's sampling timeline, as ComfyUI's own start/end_percent.

ComfyUI places `start_percent` / `end_percent` with `model_sampling.percent_to_sigma` (EasyCache,
LazyCache, ControlNet). That map is monotone, so a sigma's position is found by bisection on it,
which works for every model_sampling class (discrete eps/v, flow with any shift, Cosmos' RF) without
knowing its formula.
"""
from __future__ import annotations

from ..blockdance_core import Timeline

_ITERATIONS = 36   # 2^-36 ~ 1.5e-11 of the timeline


def position_on(model_sampling):
    top = float(model_sampling.percent_to_sigma(0.0))

    def position(sigma: float) -> float:
        if sigma >= top:
            return 0.0
        lo, hi = 0.0, 1.0
        for _ in range(_ITERATIONS):
            mid = (lo + hi) / 2
            if float(model_sampling.percent_to_sigma(mid)) > sigma:
                lo = mid
            else:
                hi = mid
        # Sigmas come as float32: round away that noise so a step at 0.4 stays at 0.4.
        return round((lo + hi) / 2, 6)

    return position


def timeline_of(sigmas, model_sampling) -> Timeline:
    values = [float(s) for s in sigmas.flatten().tolist()]
    return Timeline.build(values, position_on(model_sampling) if model_sampling is not None else None)
