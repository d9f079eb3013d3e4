"""Install BlockDance on a clone of a ComfyUI ModelPatcher; the incoming model is never changed."""
from __future__ import annotations

import logging

import comfy.patcher_extension as patcher_extension

from ..blockdance_core import BlockDanceConfig, BlockDanceConfigError
from .families import detect
from .hooks import WRAPPER_KEY, BlockPatch, apply_model_wrapper, outer_sample_wrapper
from .holder import TRANSFORMER_OPTIONS_KEY, BlockDanceHolder

logger = logging.getLogger("BlockDance")


def apply_blockdance(model, config: BlockDanceConfig, node_id=None):
    """Return a patched clone of `model` (a ComfyUI ModelPatcher)."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect(diffusion_model)
    blocks = family.blocks(diffusion_model)
    holder = BlockDanceHolder(config, family, len(blocks), node_id)
    cache_stage = blocks[holder.engine.cache_index][0]
    if config.mode == "delta" and not cache_stage.delta_ok:
        last_ok = max((i for i, (s, _) in enumerate(blocks) if s.delta_ok), default=-1)
        raise BlockDanceConfigError(
            f"delta mode on {family.name} needs the cache point within the first {last_ok + 1} of its "
            f"{len(blocks)} blocks (depth <= {(last_ok + 1) / len(blocks):.2f}); depth={config.depth} puts it at "
            f"block {holder.engine.cache_index}, whose layout the block-0 input does not map onto. "
            "Lower depth or use mode=blockdance.")

    patched = model.clone()
    transformer_options = patched.model_options.setdefault("transformer_options", {})
    if "torch_compile_kwargs" in patched.model_options:
        logger.warning("BlockDance: the model is set up for torch.compile; skipped blocks may cause recompiles")
    _remove_previous(patched, transformer_options)
    transformer_options[TRANSFORMER_OPTIONS_KEY] = holder

    dit = transformer_options.get("patches_replace", {}).get("dit", {})
    for index in holder.engine.hooked_blocks:
        stage, local = blocks[index]
        if stage.replace_name is None:
            continue  # reached through the container swap
        existing = dit.get((stage.replace_name, local))
        if existing is not None:
            logger.warning("BlockDance: %s %d already has a patch from another node; it runs inside "
                           "BlockDance's whenever the block is computed", stage.replace_name, local)
        patched.set_model_patch_replace(BlockPatch(holder, index, stage, inner=existing), "dit",
                                        stage.replace_name, local)
    patched.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, outer_sample_wrapper)
    patched.add_wrapper_with_key(patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, apply_model_wrapper)
    return patched


def _remove_previous(patched, transformer_options) -> None:
    """A second BlockDance Patch replaces the first instead of stacking on it."""
    if TRANSFORMER_OPTIONS_KEY not in transformer_options:
        return
    logger.warning("BlockDance: the model was already patched by BlockDance; the new settings replace the old")
    transformer_options.pop(TRANSFORMER_OPTIONS_KEY)
    dit = transformer_options.get("patches_replace", {}).get("dit", {})
    for key, patch in list(dit.items()):
        if isinstance(patch, BlockPatch):
            if patch.inner is not None:
                dit[key] = patch.inner
            else:
                del dit[key]
    for wrapper_type in (patcher_extension.WrappersMP.OUTER_SAMPLE, patcher_extension.WrappersMP.APPLY_MODEL):
        patched.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
