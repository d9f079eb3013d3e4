"""The `delta_dit` benchmark rows: Delta-DiT's stage-adaptive rule (BlockDance Delta-DiT node).

At the paper's settings (boundary 0.6, rear and front 0.75 of the stack, N=2, every step of the run,
Delta-Cache) and, at exactly the same compute, with the boundary at either end: 0 reuses the front
blocks only (a prefix, as BlockDance Patch's delta), 1 the rear blocks only. The three rows answer
whether rear-range reuse early in sampling beats prefix reuse there at matched compute.
"""
from __future__ import annotations

from typing import List

from .configs import Config
from .measure import node

PAPER = {"boundary": 0.6, "rear_size": 0.75, "front_size": 0.75, "N": 2, "start_percent": 0.0, "end_percent": 1.0,
         "mode": "delta"}
BOUNDARIES = (0.6, 0.0, 1.0)   # the paper's; front only; rear only


def delta_dit_configs(pack, model, steps: int) -> List[Config]:
    configs = []
    for boundary in BOUNDARIES:
        settings = {**PAPER, "boundary": boundary}
        patched = node(pack, "BlockDanceDeltaDiT").execute(model, **settings).result[0]
        configs.append(Config("delta_dit", {"boundary": boundary, "size": 0.75, "N": 2}, steps, patched))
    return configs
