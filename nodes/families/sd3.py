"""SD3 / SD3.5 MMDiT: joint blocks registered as "double_block"; the last block's txt is None."""
from .base import DOUBLE, Family, Stage

FAMILIES = (
    Family("sd3", ("comfy.ldm.modules.diffusionmodules.mmdit.OpenAISignatureMMDITWrapper",),
           (Stage("joint_blocks", "double_block", DOUBLE),),
           notes="SD3 medium 24, SD3.5 large 38 joint blocks"),
)
