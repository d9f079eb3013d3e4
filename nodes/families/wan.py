"""Wan 2.1 / 2.2 (t2v, i2v, flf2v, camera, S2V, HuMo, Animate) and VACE.

All variants call their blocks through ("double_block", i) with {img, txt, vec, pe}; only `img`
is the hidden state. S2V's audio injector and Animate's face adapter run outside the hook and
act on the state as it flows. VACE's side branch is handled in nodes/vace.py.
"""
from .base import Family, Stage

STAGES = (Stage("blocks", "double_block", ("img",)),)

FAMILIES = (
    Family("wan_vace", ("comfy.ldm.wan.model.VaceWanModel",), STAGES, extras=("vace",),
           notes="VACE blocks mapped to skipped layers are replaced by cached outputs on reuse steps"),
    Family("wan", ("comfy.ldm.wan.model.WanModel", "comfy.ldm.wan.model_animate.AnimateWanModel"), STAGES,
           notes="Wan2.1 1.3B 30, 14B 40; Wan2.2 A14B runs each expert as its own sampler run",
           residuals_between_blocks=(
               ("comfy.ldm.wan.model.WanModel_S2V", "Wan S2V's audio injector adds into the hidden state after "
                                                    "every block (wan/model.py:1351)"),
               ("comfy.ldm.wan.model_animate.AnimateWanModel", "Wan Animate's face adapter adds into the hidden "
                                                              "state every 5 blocks (wan/model_animate.py:539)"),
           )),
)
