"""Wan VACE: keep the VACE branch from computing inside the skipped range.

VaceWanModel runs `c_skip, c = vace_blocks[k](c, x=x_orig, ...)` after each mapped layer and adds
`x += c_skip * strength`, outside the block hook (wan/model.py:781-788). On a reuse step the
VACE blocks mapped to layers 0..i would still compute, and their in-place add would land on the
block-0 input that later VACE blocks read as `x_orig`. So for the forward the VACE list holds
proxies: on a cache forward the last VACE block inside the range runs and its outputs are kept
(its hint `c` always, its skip only when it sits at the cache point); on a reuse forward the
earlier ones add zero and pass the hint through, and the last one replays what was kept.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..blockdance_core import StepAction


class VaceProxy(torch.nn.Module):
    def __init__(self, block: torch.nn.Module, holder, layer: int, is_last: bool):
        super().__init__()
        object.__setattr__(self, "_target", block)
        object.__setattr__(self, "_holder", holder)
        self.layer = layer
        self.is_last = is_last
        self._call = None
        self._calls_in_forward = 0

    def forward(self, c, **kwargs):
        engine = self._holder.engine
        if self._call is not engine.call:  # one call per VACE context (c list entry) and forward
            self._call, self._calls_in_forward = engine.call, 0
        name = f"vace:{self._calls_in_forward}"
        self._calls_in_forward += 1
        at_cache_point = self.layer == engine.cache_index
        if engine.current_action is StepAction.REUSE and engine.can_replay_side(name):
            if not self.is_last:
                return torch.zeros_like(kwargs["x"]), c
            skip, hint = engine.replay_side(name)
            return (skip if skip is not None else torch.zeros_like(kwargs["x"])), hint
        out = self._target(c, **kwargs)
        if self.is_last:
            engine.keep_side(name, (out[0] if at_cache_point else None, out[1]))
        return out


@contextmanager
def vace_swapped(diffusion_model: torch.nn.Module, holder):
    mapping = getattr(diffusion_model, "vace_layers_mapping", {})  # layer -> VACE block index
    inside = {layer: k for layer, k in mapping.items() if layer <= holder.engine.cache_index}
    original = getattr(diffusion_model, "vace_blocks", None)
    if not inside or original is None:
        yield
        return
    key = ("vace", id(original))
    if key not in holder.swap_cache:
        last_layer = max(inside)
        by_index = {k: layer for layer, k in inside.items()}
        holder.swap_cache[key] = torch.nn.ModuleList(
            VaceProxy(block, holder, by_index[k], by_index[k] == last_layer) if k in by_index else block
            for k, block in enumerate(original))
    diffusion_model.vace_blocks = holder.swap_cache[key]
    try:
        yield
    finally:
        diffusion_model.vace_blocks = original
