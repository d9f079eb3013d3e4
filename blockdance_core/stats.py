"""What one sampling run did, and the `BlockDance:` log line other tools parse."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Set


@dataclass
class RunStats:
    num_steps: int = 0                    # steps in the run's schedule
    steps_seen: Set[int] = field(default_factory=set)
    steps_reused: Set[int] = field(default_factory=set)   # steps where a call reused features
    model_calls: int = 0
    reuse_calls: int = 0
    fallback_calls: int = 0               # planned reuse without a usable cache entry
    block_calls_run: int = 0
    block_calls_skipped: int = 0
    cache_peak_bytes: int = 0

    @property
    def block_calls_total(self) -> int:
        return self.block_calls_run + self.block_calls_skipped

    @property
    def ideal_speedup(self) -> float:
        """Speedup of the block stack if every block cost the same: total / executed."""
        if self.block_calls_run == 0:
            return 1.0
        return self.block_calls_total / self.block_calls_run

    def log_line(self, family: str, mode: str, **extra) -> str:
        parts = [
            f"family={family}",
            f"mode={mode}",
            f"reused={len(self.steps_reused)}/{self.num_steps}",
            f"blocks_skipped={self.block_calls_skipped}/{self.block_calls_total}",
            f"ideal={self.ideal_speedup:.2f}x",
            f"cache_mb={self.cache_peak_bytes / 2**20:.2f}",
        ]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return "BlockDance: " + " ".join(parts)


def parse_log_line(line: str) -> dict:
    """Inverse of RunStats.log_line, for tools and tests: key=value pairs after `BlockDance:`."""
    _, _, rest = line.partition("BlockDance:")
    return dict(item.split("=", 1) for item in rest.split() if "=" in item)
