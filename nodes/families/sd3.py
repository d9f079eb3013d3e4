"""SD3 / SD3.5 MMDiT (medium 24, large 38 joint blocks): joint blocks registered as "double_block";
the last block's txt is None."""
from .base import DOUBLE, Family, Stage

FAMILIES = (
    Family("sd3", ("comfy.ldm.modules.diffusionmodules.mmdit.OpenAISignatureMMDITWrapper",),
           (Stage("joint_blocks", "double_block", DOUBLE),),
           width_at="hidden_size", cond_width_at="context_embedder.in_features"),
)
