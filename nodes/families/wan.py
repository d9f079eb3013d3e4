"""Wan 2.1 / 2.2 (t2v, i2v, flf2v, camera, S2V, HuMo, Animate) and VACE.

All variants call their blocks through ("double_block", i) with {img, txt, vec, pe}; only `img`
is the hidden state (Wan2.1 1.3B: 30 blocks, 14B: 40; Wan2.2 A14B runs each expert as its own
sampler run). S2V's audio injector and Animate's face adapter run outside the hook and act on the
state as it flows. VACE's side branch (its blocks mapped to skipped layers replay cached outputs on
reuse steps) is nodes/vace.py.
"""
from ..vace import vace_swapped
from .base import Family, Stage

STAGES = (Stage("blocks", "double_block", ("img",)),)
WIDTHS = dict(width_at="dim", cond_width_at="text_embedding.0.in_features")

FAMILIES = (
    Family("wan_vace", ("comfy.ldm.wan.model.VaceWanModel",), STAGES, side_branches=(vace_swapped,), **WIDTHS),
    Family("wan", ("comfy.ldm.wan.model.WanModel", "comfy.ldm.wan.model_animate.AnimateWanModel"), STAGES, **WIDTHS,
           residuals_between_blocks=(
               ("comfy.ldm.wan.model.WanModel_S2V", "Wan S2V's audio injector adds into the hidden state after "
                                                    "every block (WanModel_S2V.forward_orig, core v0.8.0)"),
               ("comfy.ldm.wan.model_animate.AnimateWanModel", "Wan Animate's face adapter adds into the hidden "
                                                              "state every 5 blocks (AnimateWanModel.forward_orig, "
                                                              "core v0.8.0)"),
           )),
)
