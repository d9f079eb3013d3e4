"""Families whose forward calls every block through patches_replace["dit"], one line each."""
from .base import DOUBLE, TXT_FIRST, Family, SingleStream, Stage

FAMILIES = (
    Family("hunyuan_video", ("comfy.ldm.hunyuan_video.model.HunyuanVideo",),
           (Stage("double_blocks", "double_block", DOUBLE),
            Stage("single_blocks", "single_block", ("img",), from_block0=SingleStream("hunyuan_video", "img"))),
           notes="single stream is cat(img, txt), image first (v0.8.0 hunyuan_video/model.py:416); text first "
                 "since core v0.14, which marks it with img_slice"),
    Family("ltxv", ("comfy.ldm.lightricks.model.LTXVModel", "comfy.ldm.lightricks.av_model.LTXAVModel"),
           (Stage("transformer_blocks", "double_block", ("img",)),),
           notes="LTX-2 audio+video: img is the tuple (video, audio); both are cached"),
    Family("qwen_image", ("comfy.ldm.qwen_image.model.QwenImageTransformer2DModel",),
           (Stage("transformer_blocks", "double_block", DOUBLE),),
           notes="60 blocks; post-block double_block patches still run on reuse steps"),
    Family("auraflow", ("comfy.ldm.aura.mmdit.MMDiT",),
           (Stage("double_layers", "double_block", DOUBLE),
            Stage("single_layers", "single_block", ("img",), from_block0=TXT_FIRST)),
           notes="4 double + 32 single; single stream is cat(txt, img)"),
    Family("mochi", ("comfy.ldm.genmo.joint_model.asymm_models_joint.AsymmDiTJoint",),
           (Stage("blocks", "double_block", DOUBLE),),
           notes="48 asymmetric joint blocks"),
)
