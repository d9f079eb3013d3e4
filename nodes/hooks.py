"""The three places BlockDance enters a ComfyUI sampling run.

- OUTER_SAMPLE wrapper: once per sampler run; resets the engine, and in `finally` frees the
  cache and reports the run (also when the run was interrupted).
- APPLY_MODEL wrapper: once per model forward, for every family; tells the engine the sigma
  and the conditioning chunks (uuids) of the forward, and swaps containers where needed.
- BlockPatch: the patches_replace["dit"] entry of each block 0..i.
"""
from __future__ import annotations

from contextlib import ExitStack

from . import telemetry
from .holder import TRANSFORMER_OPTIONS_KEY
from .swap import swapped_blocks
from .vace import vace_swapped

# Per-forward helpers a family can ask for in Family.extras.
EXTRAS = {"vace": vace_swapped}

WRAPPER_KEY = "blockdance"


class BlockPatch:
    """Replaces block `index` of the stack; `inner` is another pack's patch for the same key,
    which still runs whenever the block is computed."""

    def __init__(self, holder, index: int, stage, inner=None):
        self.holder = holder
        self.index = index
        self.stage = stage
        self.inner = inner

    def __call__(self, args, extra):
        if self.holder.engine.runs_plainly(self.index):  # full step: no state, no closure
            return self.inner(args, extra) if self.inner is not None else extra["original_block"](args)
        state = {k: args[k] for k in self.stage.state_keys}

        def compute(new_state):
            call_args = {**args, **new_state}
            if self.inner is not None:
                return self.inner(call_args, extra)
            return extra["original_block"](call_args)

        return self.holder.engine.run_block(self.index, state, compute, self.stage.from_block0)


def _holder(transformer_options):
    return transformer_options.get(TRANSFORMER_OPTIONS_KEY) if transformer_options else None


def outer_sample_wrapper(executor, *args, **kwargs):
    holder = _holder(executor.class_obj.model_options.get("transformer_options"))
    if holder is None:
        return executor(*args, **kwargs)
    holder.engine.start_run()
    try:
        return executor(*args, **kwargs)
    finally:
        stats = holder.engine.finish_run()
        holder.last_stats = stats
        telemetry.report(holder, stats)


def _chunk_keys(transformer_options) -> list:
    keys = list(transformer_options.get("uuids") or transformer_options.get("cond_or_uncond") or [])
    window = transformer_options.get("context_window")
    if window is not None and hasattr(window, "index_list"):
        keys = [(k, tuple(window.index_list)) for k in keys]
    return keys


def apply_model_wrapper(executor, *args, **kwargs):
    transformer_options = args[5] if len(args) > 5 else kwargs.get("transformer_options")
    holder = _holder(transformer_options)
    sample_sigmas = transformer_options.get("sample_sigmas") if transformer_options else None
    if holder is None or sample_sigmas is None or "sigmas" not in transformer_options:
        return executor(*args, **kwargs)  # not inside a sampler run: nothing to plan against
    engine = holder.engine
    sigma = float(transformer_options["sigmas"].flatten()[0])
    engine.begin_call(holder.schedule_floats(sample_sigmas), sigma, _chunk_keys(transformer_options))
    try:
        with ExitStack() as stack:
            diffusion_model = executor.class_obj.diffusion_model
            if holder.family.uses_swap:
                stack.enter_context(swapped_blocks(diffusion_model, holder))
            for extra in holder.family.extras:
                stack.enter_context(EXTRAS[extra](diffusion_model, holder))
            return executor(*args, **kwargs)
    finally:
        engine.end_call()

