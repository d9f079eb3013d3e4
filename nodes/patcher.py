"""Install BlockDance on a clone of a ComfyUI ModelPatcher; the incoming model is never changed."""
from __future__ import annotations

import logging

import comfy.patcher_extension as patcher_extension

from ..blockdance_core import BlockDanceConfigError, PatchSpec, StepPolicy
from ..blockdance_core.policy import ModelFingerprint
from .description import DESCRIPTION_KEY, PatchDescription
from .families import detect
from .families.base import delta_reaches
from .hooks import WRAPPER_KEY, BlockPatch, apply_model_wrapper, outer_sample_wrapper, predict_noise_wrapper

logger = logging.getLogger("BlockDance")
WRAPPERS = ((patcher_extension.WrappersMP.OUTER_SAMPLE, outer_sample_wrapper),
            (patcher_extension.WrappersMP.PREDICT_NOISE, predict_noise_wrapper),
            (patcher_extension.WrappersMP.APPLY_MODEL, apply_model_wrapper))


def apply_blockdance(model, policy: StepPolicy, mode: str, node_id=None):
    """Return a patched clone of `model` (a ComfyUI ModelPatcher) driven by `policy`; `mode` is what
    the user chose, for the log line."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect(diffusion_model)
    blocks = family.blocks(diffusion_model)
    policy.check_model(model_fingerprint(model))
    spec = PatchSpec(policy, len(blocks), family.batch_dim, tuple(family.stages.index(s) for s, _ in blocks))
    _check_delta(policy, family, blocks)
    hooked = [(index, *blocks[index]) for index in spec.hooked_blocks]
    for index, stage, local in hooked:
        stage.delivery.check(family.block(diffusion_model, stage, local), f"{family.name} {stage.container}[{local}]")
    hook_keys = tuple(key for _, stage, local in hooked if (key := stage.delivery.hook_key(local)) is not None)
    description = PatchDescription(spec, family, mode, hook_keys, node_id, family.residual_reason(diffusion_model))

    patched = model.clone()
    transformer_options = patched.model_options.setdefault("transformer_options", {})
    if "torch_compile_kwargs" in patched.model_options:
        logger.warning("BlockDance: the model is set up for torch.compile; BlockDance's bookkeeping runs outside "
                       "the compiled graph")
    _remove_previous(patched, transformer_options)
    transformer_options[DESCRIPTION_KEY] = description
    dit = transformer_options.get("patches_replace", {}).get("dit", {})
    for index, stage, local in hooked:
        if stage.delivery.swaps:
            continue  # reached through the per-forward container swap (nodes/swap.py)
        existing = dit.get((stage.replace_name, local))
        if existing is not None:
            logger.warning("BlockDance: %s %d already has a patch from another node; it runs inside "
                           "BlockDance's whenever the block is computed", stage.replace_name, local)
        patched.set_model_patch_replace(BlockPatch(description, index, stage, inner=existing), "dit",
                                        stage.replace_name, local)
    for wrapper_type, wrapper in WRAPPERS:
        patched.add_wrapper_with_key(wrapper_type, WRAPPER_KEY, wrapper)
    return patched


def model_fingerprint(model) -> ModelFingerprint:
    """What a schedule or policy must fit on `model` (a ModelPatcher), as its family adapter reads it:
    compared when patching, and written into a schedule by BlockDance Calibrate."""
    diffusion_model = model.get_model_object("diffusion_model")
    return detect(diffusion_model).fingerprint(diffusion_model, _latent_channels(model))


def _latent_channels(model):
    """The channels of the latent the sampler hands the model (the model's latent format)."""
    try:
        channels = model.get_model_object("latent_format").latent_channels
    except AttributeError:
        return None
    return channels if isinstance(channels, int) else None


def _check_delta(policy: StepPolicy, family, blocks) -> None:
    """Refuse delta where the range's input does not map onto its last block's layout: a range within
    one stage always maps (same layout); one that crosses into a later stage needs that stage to map."""
    num_blocks = len(blocks)
    for block_range, mode in policy.ranges(num_blocks):
        if mode != "delta":
            continue
        first, last = block_range[0], block_range[-1]
        if first > 0 and blocks[first][0] is not blocks[last][0] and not blocks[last][0].delta_ok:
            raise BlockDanceConfigError(
                f"delta mode on {family.name} cannot skip blocks {first}..{last}: they run from its "
                f"{blocks[first][0].container} into its {blocks[last][0].container}, whose layout the input of "
                f"block {first} does not map onto. Keep the range within one of the two (a smaller size) or use "
                "mode=blockdance.")
        if first == 0 and not delta_reaches(blocks, last + 1):
            cuts_ok = max((c for c in range(1, num_blocks + 1) if delta_reaches(blocks, c)), default=0)
            raise BlockDanceConfigError(
                f"delta mode on {family.name} needs the cache point within the first {cuts_ok} of its "
                f"{num_blocks} blocks (depth <= {cuts_ok / num_blocks:.2f}); the chosen depth puts it at "
                f"block {last}, whose layout the block-0 input does not map onto. "
                "Lower depth (front_size on BlockDance Delta-DiT) or use mode=blockdance.")


def _remove_previous(patched, transformer_options) -> None:
    """A second BlockDance Patch replaces the first instead of stacking on it."""
    if DESCRIPTION_KEY not in transformer_options:
        return
    logger.warning("BlockDance: the model was already patched by BlockDance; the new settings replace the old")
    transformer_options.pop(DESCRIPTION_KEY)
    dit = transformer_options.get("patches_replace", {}).get("dit", {})
    for key, patch in list(dit.items()):
        if isinstance(patch, BlockPatch):
            if patch.inner is not None:
                dit[key] = patch.inner
            else:
                del dit[key]
    for wrapper_type, _ in WRAPPERS:
        patched.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
