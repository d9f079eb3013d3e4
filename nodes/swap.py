"""Temporary block-container swap for families whose forward has no block hook (PixArt, HiDream,
Lumina2 / Z-Image, Cosmos Predict2).

ComfyUI's own torch_compile helper does the same inside a wrapper: replace the container for
one forward and restore it in `finally`. A permanent swap would change the module paths that
weight patches, LoRA and lowvram loading walk. Only the hooked blocks get a proxy; the proxies
belong to the sampler run (they are built once per run and dropped with it).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .delivery import deliver
from .families.base import get_attr_path


class BlockProxy(torch.nn.Module):
    def __init__(self, block: torch.nn.Module, run, index: int, stage):
        super().__init__()
        # Not registered as a submodule: the proxy must not show up in named_modules() paths.
        object.__setattr__(self, "_target", block)
        object.__setattr__(self, "_run", run)
        self.index = index
        self.stage = stage

    @torch.compiler.disable   # the run's bookkeeping stays out of torch.compile's graphs (see hooks.BlockPatch)
    def forward(self, *args, **kwargs):
        return deliver(self._run, self.index, self.stage.delivery, (self._target, args, kwargs))

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_target"), name)  # e.g. Cosmos' x_format


def _proxied(container: torch.nn.ModuleList, run, first_index: int, stage) -> torch.nn.ModuleList:
    hooked = run.spec.hooked_blocks
    return torch.nn.ModuleList(
        BlockProxy(block, run, first_index + i, stage) if first_index + i in hooked else block
        for i, block in enumerate(container))


@contextmanager
def swapped_blocks(diffusion_model: torch.nn.Module, run, description):
    """Within the block, the swap stages' containers hold the run's proxies for the hooked blocks."""
    restore = []
    first_index = 0
    try:
        for stage in description.family.stages:
            container = get_attr_path(diffusion_model, stage.container)
            if stage.delivery.swaps and container is not None:
                key = ("swap", id(container))
                if key not in run.scratch:
                    run.scratch[key] = _proxied(container, run, first_index, stage)
                parent_path, _, name = stage.container.rpartition(".")
                parent = get_attr_path(diffusion_model, parent_path) if parent_path else diffusion_model
                setattr(parent, name, run.scratch[key])
                restore.append((parent, name, container))
            first_index += len(container) if container is not None else 0
        yield
    finally:
        for parent, name, container in reversed(restore):
            setattr(parent, name, container)
