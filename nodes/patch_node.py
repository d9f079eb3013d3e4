"""The "BlockDance Patch" node: MODEL -> MODEL with block-feature reuse across steps."""
from __future__ import annotations

from ..blockdance_core import MODES, BlockDanceConfig
from .families import FAMILIES
from .patcher import apply_blockdance

DEFAULT_DEPTH = 0.75  # the paper's 21 of 28 blocks; no family has a measured preset yet


class BlockDancePatch:
    DESCRIPTION = (
        "Speeds up DiT sampling by reusing block features across steps (BlockDance, CVPR 2025). "
        "On a cache step the whole model runs and the output of the block at `depth` is kept; on the "
        "next N-1 steps the blocks up to it are skipped and only the deeper blocks run. Supported: "
        + ", ".join(f.name for f in FAMILIES) + ".")
    CATEGORY = "model_patches/blockdance"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("A patched copy of the model; the input model is left unchanged.",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion transformer to speed up."}),
                "mode": (list(MODES), {"default": "blockdance", "tooltip":
                    "blockdance: reuse the cached block output as is. delta: reuse the change the skipped "
                    "blocks made (F_i - F_0) on top of the current step's input, so the current latent "
                    "still flows through (Delta-DiT)."}),
                "depth": ("FLOAT", {"default": DEFAULT_DEPTH, "min": 0.01, "max": 1.0, "step": 0.01, "tooltip":
                    "Fraction of the block stack skipped on a reuse step. Higher = faster and less faithful. "
                    "0.75 is the paper's setting (21 of PixArt's 28 blocks)."}),
                "N": ("INT", {"default": 2, "min": 1, "max": 100, "tooltip":
                    "Group size: one full (cache) step, then N-1 reuse steps. N=1 turns reuse off and "
                    "reproduces the unpatched model exactly."}),
                "start_percent": ("FLOAT", {"default": 0.4, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                    "Reuse starts at this fraction of the sampling steps. Early steps form the layout and "
                    "are always computed in full."}),
                "end_percent": ("FLOAT", {"default": 0.95, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                    "Reuse stops at this fraction of the steps; the last steps refine detail and are "
                    "always computed in full."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def patch(self, model, mode, depth, N, start_percent, end_percent, unique_id=None):
        config = BlockDanceConfig(mode=mode, depth=depth, N=N, start_percent=start_percent, end_percent=end_percent)
        return (apply_blockdance(model, config, node_id=unique_id),)


NODE_CLASS_MAPPINGS = {"BlockDancePatch": BlockDancePatch}
NODE_DISPLAY_NAME_MAPPINGS = {"BlockDancePatch": "BlockDance Patch"}
