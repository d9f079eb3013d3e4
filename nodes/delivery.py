"""How a hooked block reaches the sampling run: one strategy per stage, one entry for both.

A stage is reached either through ComfyUI's block hook (`patches_replace["dit"]`, the forward calls
our patch with `(args, {"original_block": ...})`) or, where the forward has no hook, through a
per-forward swap of its block container (nodes/swap.py: the forward calls our proxy like the block).
Each strategy says how to call the block plainly, where its hidden state is, how to run the real
block on another state and what the model's loop expects back; `deliver` asks the run its one
question (run / pass through / replace) and acts on the answer, the same way for both.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from ..blockdance_core import BlockDanceConfigError
from ..blockdance_core.engine import Role


def deliver(run, index: int, delivery, call) -> Any:
    """Hooked block `index` for the forward in flight; `call` is the host's invocation of the block."""
    role = run.role(index) if run is not None else Role.RUN
    if role is Role.RUN:   # nothing to do here: no state, no closure
        return delivery.plain(call)
    state = delivery.state(call)
    if role is Role.PASS:
        return delivery.output(state)
    out = run.run_block(index, state, lambda new_state: delivery.compute(call, new_state), delivery.to_stage(call))
    return delivery.output(out)


class PatchDelivery:
    """The forward calls `patches_replace["dit"][(replace_name, i)]`; call = (args, extra, inner), where
    `inner` is another pack's patch for the same key (it still runs whenever the block is computed)."""
    swaps = False

    def __init__(self, stage):
        self.stage = stage

    def hook_key(self, local: int):
        return (self.stage.replace_name, local)

    def check(self, block: torch.nn.Module, where: str) -> None:
        """Nothing to check: ComfyUI's forward hands the hook its arguments by name."""

    def plain(self, call):
        args, extra, inner = call
        return inner(args, extra) if inner is not None else extra["original_block"](args)

    def state(self, call):
        return {k: call[0][k] for k in self.stage.state_keys}

    def compute(self, call, new_state):
        args, extra, inner = call
        call_args = {**args, **new_state}
        return inner(call_args, extra) if inner is not None else extra["original_block"](call_args)

    def output(self, state):
        return state

    def to_stage(self, call):
        return self.stage.block0_converter(call[0].get("transformer_options"))


class SwapDelivery:
    """The forward calls the block itself (its container swapped for proxies); call = (block, args, kwargs)."""
    swaps = True

    def __init__(self, stage):
        self.stage = stage

    def hook_key(self, local: int):
        return None

    def check(self, block: torch.nn.Module, where: str) -> None:
        """At patch time: the block's forward takes what the stage's swap functions read from its call."""
        try:
            params = inspect.signature(block.forward).parameters
        except (TypeError, ValueError):
            return   # a builtin or C forward: nothing to read
        has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        missing = [] if has_var_kw else [name for name in self.stage.swap_params if name not in params]
        positional = [p for p in params.values() if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                              inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                              inspect.Parameter.VAR_POSITIONAL)]
        if missing or not positional:
            wanted = ", ".join(self.stage.swap_params) or "the hidden state as its first argument"
            raise BlockDanceConfigError(
                f"{where} ({type(block).__qualname__}) has forward{inspect.signature(block.forward)}; BlockDance's "
                f"adapter for this family calls it with {wanted}. This ComfyUI version lays the block out "
                "differently from the ones BlockDance knows.")

    def plain(self, call):
        block, args, kwargs = call
        return block(*args, **kwargs)

    def state(self, call):
        return self.stage.swap_state(call[1], call[2])

    def compute(self, call, new_state):
        block, args, kwargs = call
        return self.stage.swap_call(block, new_state, args, kwargs)

    def output(self, state):
        return self.stage.swap_output(state) if self.stage.swap_output is not None else state

    def to_stage(self, call):
        return self.stage.block0_converter(None)
