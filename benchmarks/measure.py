"""Counting what really executes, and sampling a tiny model, shared by the benchmarks and the tests."""
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


def sample_tiny(model, tm, steps=10, cfg=2.0, sampler="euler", scheduler="simple", seed=1, latent=None,
                callback=None):
    """Sample `model` (a ModelPatcher) with a tiny model's conditioning and empty latent."""
    import comfy.sample
    latent = tm.latent if latent is None else latent
    image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(image, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, tm.positive, tm.negative, image,
                               callback=callback, disable_pbar=True, seed=seed)


def node(pack, node_id: str):
    """One of the pack's V3 node classes by its node id."""
    return {cls.GET_SCHEMA().node_id: cls for cls in pack.NODES}[node_id]


def patch(pack, model, mode="blockdance", depth=0.75, N=2, start_percent=0.4, end_percent=0.95, forecast="copy"):
    """`model` through the pack's BlockDance Patch node."""
    return node(pack, "BlockDancePatch").execute(model, mode, depth, N, start_percent, end_percent,
                                                 forecast=forecast).result[0]


def description_of(model):
    """The BlockDance patch description a patched model carries (None when unpatched)."""
    return model.model_options.get("transformer_options", {}).get("blockdance")


def recorded_runs(pack):
    """Context manager collecting the report (description, record, log line) of every sampler run
    that ends inside it."""
    return pack.nodes.telemetry.recorded_runs()


def record_of(reports, model):
    """The record of the last run of `model` among `reports`."""
    description = description_of(model)
    return [r.record for r in reports if r.description is description][-1]
