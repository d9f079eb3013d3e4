"""Wan VACE: keep the VACE branch from computing inside the skipped range.

VaceWanModel runs `c_skip, c = vace_blocks[k](c, x=x_orig, ...)` after each mapped layer and adds
`x += c_skip * strength`, outside the block hook (VaceWanModel.forward_orig, core v0.8.0). On a reuse step the VACE
blocks mapped to skipped layers would still compute, and their in-place add would land on the
block-0 input that later VACE blocks read as `x_orig`. So for the forward the VACE list holds
proxies: on a cache forward the last VACE block inside the step's range runs and its outputs are
kept (its hint `c` always, its skip only when it sits on the range's last block, whose output is
kept before the add); on a reuse forward the earlier ones add zero and pass the hint through, and
the last one replays what was kept. The proxies and what they keep belong to the sampler run.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..blockdance_core import StepKind


class VaceProxy(torch.nn.Module):
    def __init__(self, block: torch.nn.Module, run, layer: int, mapped_layers: tuple):
        super().__init__()
        object.__setattr__(self, "_target", block)
        object.__setattr__(self, "_run", run)
        self.layer = layer
        self.mapped_layers = mapped_layers   # every layer that has a VACE block, ascending

    @torch.compiler.disable   # the run's bookkeeping stays out of torch.compile's graphs (see hooks.BlockPatch)
    def forward(self, c, **kwargs):
        side = self._run.side
        kind = side.kind
        if kind not in (StepKind.CACHE, StepKind.REUSE) or self.layer not in side.blocks:
            return self._target(c, **kwargs)
        blocks = side.blocks
        is_last = self.layer == max(layer for layer in self.mapped_layers if layer in blocks)
        name = side.name("vace") if is_last else "vace:0"
        if kind is StepKind.REUSE and side.can_replay(name):
            if not is_last:
                return torch.zeros_like(kwargs["x"]), c
            skip, hint = side.replay(name)
            return (skip if skip is not None else torch.zeros_like(kwargs["x"])), hint
        out = self._target(c, **kwargs)
        if is_last:
            side.keep(name, (out[0] if self.layer == blocks[-1] else None, out[1]))
        return out


@contextmanager
def vace_swapped(diffusion_model: torch.nn.Module, run):
    mapping = getattr(diffusion_model, "vace_layers_mapping", {})  # layer -> VACE block index
    inside = {layer: k for layer, k in mapping.items() if layer in run.spec.hooked_blocks}
    original = getattr(diffusion_model, "vace_blocks", None)
    if not inside or original is None:
        yield
        return
    key = ("vace", id(original))
    if key not in run.scratch:
        by_index = {k: layer for layer, k in inside.items()}
        mapped = tuple(sorted(mapping))
        run.scratch[key] = torch.nn.ModuleList(
            VaceProxy(block, run, by_index[k], mapped) if k in by_index else block for k, block in enumerate(original))
    diffusion_model.vace_blocks = run.scratch[key]
    try:
        yield
    finally:
        diffusion_model.vace_blocks = original
