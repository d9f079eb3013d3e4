"""Counting what really executes, shared by the benchmarks and the tests."""
from __future__ import annotations

from typing import List

import torch


class BlockCounter:
    """Counts real executions of block modules with forward hooks, independently of the pack."""

    def __init__(self, diffusion_model: torch.nn.Module, containers: List[str]):
        self.blocks = [b for name in containers for b in _get_path(diffusion_model, name)]
        self.counts = [0] * len(self.blocks)
        self._handles = [b.register_forward_hook(self._hook(i)) for i, b in enumerate(self.blocks)]

    def _hook(self, i):
        def hook(module, args, output):
            self.counts[i] += 1
        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj
