"""Per family: how BlockDance hooks it, and block executions counted for one schedule.

`python -m benchmarks.family_report` builds each tiny random-weight model, samples 10 euler
steps at cfg 2 with N=2, depth 0.5, window 0.40-0.95, and prints real per-block execution
counts (forward hooks on the block modules) beside the pack's own `BlockDance:` line.
"""
from __future__ import annotations

import sys

from .comfy_env import PACK_MODULE, load_pack
from .measure import BlockCounter, patch, recorded_runs, sample_tiny


def main() -> int:
    pack = load_pack()
    from . import tiny_models

    families = sys.modules[f"{PACK_MODULE}.nodes.families"]
    print(f"{'family':<16}{'class':<32}{'hook':<7}{'blocks':>7}  executions per block (10 steps)")
    for name in tiny_models.FAMILIES:
        side = tiny_models.MIN_SIZE.get(name, 64)
        tm = tiny_models.build(name, seed=0, width=side, height=side)
        family = families.detect(tm.patcher.get_model_object("diffusion_model"))
        patched = patch(pack, tm.patcher, depth=0.5, N=2)
        counter = BlockCounter(patched.get_model_object("diffusion_model"), [s.container for s in family.stages])
        try:
            with recorded_runs(pack) as reports:
                sample_tiny(patched, tm)  # 10 euler steps, cfg 2
        finally:
            counter.close()
        hook = "swap" if family.uses_swap else "dit"
        print(f"{name:<16}{tm.diffusion_model_class:<32}{hook:<7}{tm.num_blocks:>7}  {counter.counts}")
        print(f"{'':<16}{reports[-1].line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
