"""The places BlockDance enters a ComfyUI sampling run.

- OUTER_SAMPLE wrapper: once per sampler run; makes the run object from the run's sigmas and puts it
  into this run's model_options, follows the sampler's step callback, and in `finally` frees the
  cache and reports the run (interrupted runs included).
- PREDICT_NOISE wrapper: once per model evaluation of the sampler (its main forwards, then guidance
  extras such as SkipLayerGuidance's).
- APPLY_MODEL wrapper: once per model forward; checks that BlockDance's hooks are really in place
  for that forward, tells the run the sigma and conditioning chunks, and swaps block containers where
  a family has no block hook.
- BlockPatch: the patches_replace["dit"] entry of each hooked block (nodes/delivery.py does the rest).
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Optional

import comfy.model_patcher
import torch

from . import telemetry
from .description import RUN_KEY, PatchDescription, description_of
from .delivery import deliver
from .swap import swapped_blocks
from .timeline import timeline_of

WRAPPER_KEY = "blockdance"


class BlockPatch:
    """Replaces hooked block `index` of the stack; `inner` is another pack's patch for the same key,
    installed before ours, which still runs whenever the block is computed."""

    def __init__(self, description: PatchDescription, index: int, stage, inner=None):
        self.description = description
        self.index = index
        self.stage = stage
        self.inner = inner

    @torch.compiler.disable
    def __call__(self, args, extra):
        # Fenced from torch.compile (TorchCompileModel): the run's bookkeeping changes every step and
        # would make dynamo guard and recompile on it; hooked blocks run eagerly, the rest compiled.
        run = _run_of(args.get("transformer_options"), self.description)
        return deliver(run, self.index, self.stage.delivery, (args, extra, self.inner))


def _run_of(transformer_options, description):
    run = transformer_options.get(RUN_KEY) if transformer_options else None
    return run if run is not None and run.spec is description.spec else None


def foreign_blocks(dit: dict, description: PatchDescription) -> list:
    """The hooked block keys whose entry in `dit` is not this patch's own BlockPatch: a node placed
    after BlockDance re-patched them, or a one-off forward (SkipLayerGuidance) replaced them."""
    return [key for key in description.hook_keys
            if not (isinstance(dit.get(key), BlockPatch) and dit[key].description is description)]


def _foreign_in(run, transformer_options, description) -> Optional[str]:
    """Why this forward cannot be trusted to BlockDance, or None. The dict of block patches is the
    same object in every ordinary forward of a run, so the answer is kept for it."""
    dit = transformer_options.get("patches_replace", {}).get("dit", {})
    known = run.scratch.get("ownership")
    if known is None or known[0] is not dit:
        keys = foreign_blocks(dit, description)
        why = (f"another node's patch held {', '.join(f'{n} {i}' for n, i in keys)} (e.g. SkipLayerGuidance "
               "or a patch node placed after BlockDance Patch), which BlockDance would skip") if keys else None
        known = run.scratch["ownership"] = (dit, why)
    return known[1]


def _residuals_in(control, transformer_options, family_residuals: Optional[str]) -> Optional[str]:
    """What adds into the hidden state between blocks in this forward (delta then sums the blocks' own
    changes instead of taking output - input)."""
    if control:
        return "a ControlNet is attached"
    if transformer_options.get("patches", {}).get("double_block"):
        return "a post-block patch (e.g. a DiffSynth ControlNet on Qwen-Image) is attached"
    return family_residuals


def outer_sample_wrapper(executor, *args, **kwargs):
    guider = executor.class_obj
    description = description_of(guider.model_options.get("transformer_options"))
    if description is None:
        return executor(*args, **kwargs)
    sigmas = args[3] if len(args) > 3 else kwargs["sigmas"]
    run = description.spec.new_run(timeline_of(sigmas, guider.model_patcher.get_model_object("model_sampling")))
    original_options = guider.model_options
    guider.model_options = comfy.model_patcher.create_model_options_clone(original_options)
    transformer_options = guider.model_options.setdefault("transformer_options", {})
    transformer_options[RUN_KEY] = run
    foreign = foreign_blocks(transformer_options.get("patches_replace", {}).get("dit", {}), description)
    if foreign:
        run.note(f"a node placed after BlockDance Patch re-patched {', '.join(f'{n} {i}' for n, i in foreign)}; "
                 "BlockDance did nothing in this run: put BlockDance Patch after that node")
    args, kwargs = _follow_steps(args, kwargs, run)
    try:
        return executor(*args, **kwargs)
    finally:
        guider.model_options = original_options
        telemetry.report(description, run.finish(), transformer_options.get(telemetry.RECEIVER_KEY))


def _follow_steps(args, kwargs, run):
    """Pass the sampler a step callback that tells the run each finished step, then calls the
    caller's own callback (KSampler's preview and progress bar), if any."""
    position = 5  # outer_sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, ...)
    user = args[position] if len(args) > position else kwargs.get("callback")

    def step_callback(step, *rest):
        run.step_done(step)
        if user is not None:
            return user(step, *rest)

    if len(args) > position:
        args = (*args[:position], step_callback, *args[position + 1:])
    else:
        kwargs = {**kwargs, "callback": step_callback}
    return args, kwargs


def predict_noise_wrapper(executor, *args, **kwargs):
    """One model evaluation; done again with its step in full when a guidance extra (SLG) replaced a
    block the main forward skipped (blockdance_core/guidance.py)."""
    guider = executor.class_obj
    transformer_options = guider.model_options.get("transformer_options", {})
    run = transformer_options.get(RUN_KEY)
    if run is None:
        return executor(*args, **kwargs)
    run.begin_evaluation()
    out = executor(*args, **kwargs)
    step = run.step_to_redo()
    if step is not None:
        run.redo_in_full(step)
        run.begin_evaluation()
        out = executor(*args, **kwargs)
    return out


def _chunk_keys(transformer_options) -> list:
    """One key per conditioning chunk of the forward: core's calc_cond_batch (v0.8.0 and 0.33.0, also its
    multi-GPU variant) sets "uuids" beside "cond_or_uncond" in every forward it makes."""
    keys = list(transformer_options.get("uuids") or [])
    window = transformer_options.get("context_window")
    if window is not None and hasattr(window, "index_list"):
        keys = [(k, tuple(window.index_list)) for k in keys]
    return keys


def apply_model_wrapper(executor, *args, **kwargs):
    # apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    transformer_options = args[5] if len(args) > 5 else kwargs.get("transformer_options")
    description = description_of(transformer_options)
    run = _run_of(transformer_options, description) if description is not None else None
    if run is None or "sigmas" not in transformer_options:
        return executor(*args, **kwargs)  # not inside a sampler run: nothing to plan against
    control = args[4] if len(args) > 4 else kwargs.get("control")
    context = args[3] if len(args) > 3 else kwargs.get("c_crossattn")
    run.begin_call(float(transformer_options["sigmas"].flatten()[0]), _chunk_keys(transformer_options),
                   x=args[0], context=context, displaced_by=_foreign_in(run, transformer_options, description),
                   residuals=_residuals_in(control, transformer_options, description.residuals))
    try:
        with ExitStack() as stack:
            diffusion_model = executor.class_obj.diffusion_model
            if description.family.uses_swap:
                stack.enter_context(swapped_blocks(diffusion_model, run, description))
            for side_branch in description.family.side_branches:
                stack.enter_context(side_branch(diffusion_model, run))
            return executor(*args, **kwargs)
    finally:
        run.end_call()
