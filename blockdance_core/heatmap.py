"""The calibration heat map as an image tensor (ComfyUI's IMAGE layout, [1, H, W, 3] in 0..1).

Columns are sampling steps, rows are cut depths (the deepest at the top); a cell's colour is how much
the output at that depth changed from the previous step (log scale: dark = stable, bright = moving).
The chosen schedule is drawn on it: a reuse step outlines the blocks it skips (from the bottom row
up to its cut) in white, a cache step gets a white tick above its column. Pure torch, no plotting
library.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

# A dark-to-bright ramp (inferno-like): black, purple, red-orange, yellow.
_RAMP = torch.tensor([[0.0, 0.0, 0.02], [0.34, 0.06, 0.43], [0.85, 0.27, 0.23], [0.99, 0.65, 0.04], [0.99, 1.0, 0.64]])


def colormap(values: torch.Tensor) -> torch.Tensor:
    """values in [0, 1] (nan -> grey) -> [..., 3] RGB."""
    v = values.clamp(0, 1).nan_to_num(0.0) * (len(_RAMP) - 1)
    lo = v.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (v - lo).unsqueeze(-1)
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    rgb[values.isnan()] = 0.35
    return rgb


def render(change: torch.Tensor, cuts: Sequence[int], steps: Optional[Sequence[Tuple[str, int]]] = None,
           cell: int = 14) -> torch.Tensor:
    """change: [cuts, steps] (probe.Measurement.step_change); steps: (kind, cut) per step of the
    chosen schedule, drawn on top. Returns [1, H, W, 3]."""
    n_cuts, n_steps = change.shape
    finite = change[torch.isfinite(change)]
    logv = change.clamp_min(1e-8).log10()
    if finite.numel():
        lo, hi = math.log10(max(float(finite.min()), 1e-8)), math.log10(max(float(finite.max()), 1e-8))
        scaled = (logv - lo) / max(hi - lo, 1e-6)
    else:
        scaled = torch.zeros_like(change)
    scaled[~torch.isfinite(change)] = math.nan
    grid = colormap(scaled.flip(0))                                    # deepest cut on top
    top = cell // 2                                                    # room for the cache ticks
    image = torch.full((top + n_cuts * cell, n_steps * cell, 3), 0.12)
    image[top:] = grid.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    for k, (kind, cut) in enumerate(steps or ()):
        x0, x1 = k * cell, (k + 1) * cell
        if kind == "cache":
            image[1:top - 1, x0 + cell // 2 - 1:x0 + cell // 2 + 1] = 1.0
        elif kind == "reuse":
            covered = sum(1 for c in cuts if c <= cut)                 # rows of cuts inside the skipped range
            y1 = top + n_cuts * cell
            y0 = y1 - covered * cell
            image[y0:y1, x0] = image[y0:y1, x1 - 1] = 1.0
            image[y0, x0:x1] = image[y1 - 1, x0:x1] = 1.0
    return image.unsqueeze(0)
