"""Speed and fidelity measurements shared by the demo and the benchmark.

Speed is always a ratio measured in one process on one model: the configurations are timed in
interleaved rounds and the ratio of medians is reported, because these machines are noisy.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Dict, List

import torch


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB against the reference, with the reference's value range as the peak;
    infinity for a bit-identical output."""
    mse = float(((output.float() - reference.float()) ** 2).mean())
    if mse == 0.0:
        return math.inf
    peak = float(reference.max() - reference.min())
    return 10.0 * math.log10(peak * peak / mse)


def interleaved_medians(runs: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median wall time of each callable, timed round-robin so drifts hit all of them alike."""
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


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
