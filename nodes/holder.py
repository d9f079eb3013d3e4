"""Per-patched-model state that rides in model_options["transformer_options"]["blockdance"].

ComfyUI deep-copies model_options on every ModelPatcher.clone() (e.g. a LoRA node placed after
ours). A copy must start clean, so the holder copies its settings and builds a fresh engine.
"""
from __future__ import annotations

from typing import Optional

from ..blockdance_core import BlockDanceConfig, BlockDanceEngine, RunStats
from .families import Family

TRANSFORMER_OPTIONS_KEY = "blockdance"


class BlockDanceHolder:
    def __init__(self, config: BlockDanceConfig, family: Family, num_blocks: int, node_id: Optional[str] = None):
        self.config = config
        self.family = family
        self.num_blocks = num_blocks
        self.node_id = node_id
        self.engine = BlockDanceEngine(config, num_blocks, family.batch_dim)
        self.last_stats: Optional[RunStats] = None
        self.swap_cache: dict = {}  # id(container) -> proxy list, built once per model
        self._schedule = None       # (sample_sigmas tensor, the same as floats)

    def __deepcopy__(self, memo):
        return BlockDanceHolder(self.config, self.family, self.num_blocks, self.node_id)

    def schedule_floats(self, sample_sigmas) -> list:
        """The run's schedule as floats, converted once per run rather than once per forward."""
        if self._schedule is None or self._schedule[0] is not sample_sigmas:
            self._schedule = (sample_sigmas, [float(s) for s in sample_sigmas.flatten().tolist()])
        return self._schedule[1]

    def log_line(self, stats: RunStats) -> str:
        c = self.config
        return stats.log_line(self.family.name, c.mode, depth=f"{c.depth:.2f}", N=c.N,
                              window=f"{c.start_percent:.2f}-{c.end_percent:.2f}",
                              cache_block=f"{self.engine.cache_index}/{self.num_blocks}")
