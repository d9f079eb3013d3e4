"""Families whose forward calls every block through patches_replace["dit"], one line each."""
from .base import DOUBLE, TXT_FIRST, Family, SingleStream, Stage

FAMILIES = (
    Family("hunyuan_video", ("comfy.ldm.hunyuan_video.model.HunyuanVideo",),
           # single stream is cat(img, txt), image first (HunyuanVideo.forward_orig, core v0.8.0); text first
           # since core v0.14, which marks it with img_slice
           (Stage("double_blocks", "double_block", DOUBLE),
            Stage("single_blocks", "single_block", ("img",), from_block0=SingleStream("hunyuan_video", "img"))),
           width_at="hidden_size", cond_width_at="txt_in.input_embedder.in_features"),
    Family("ltxv", ("comfy.ldm.lightricks.model.LTXVModel", "comfy.ldm.lightricks.av_model.LTXAVModel"),
           (Stage("transformer_blocks", "double_block", ("img",)),),   # LTX-2 audio+video: img is (video, audio)
           width_at="inner_dim", cond_width_at="caption_projection.linear_1.in_features"),
    Family("qwen_image", ("comfy.ldm.qwen_image.model.QwenImageTransformer2DModel",),
           (Stage("transformer_blocks", "double_block", DOUBLE),),   # post-block patches still run on reuse steps
           width_at="inner_dim", cond_width_at="txt_in.in_features"),
    Family("auraflow", ("comfy.ldm.aura.mmdit.MMDiT",),
           (Stage("double_layers", "double_block", DOUBLE),
            Stage("single_layers", "single_block", ("img",), from_block0=TXT_FIRST)),   # single stream: cat(txt, img)
           width_at="cond_seq_linear.out_features", cond_width_at="cond_seq_linear.in_features"),
    Family("mochi", ("comfy.ldm.genmo.joint_model.asymm_models_joint.AsymmDiTJoint",),
           (Stage("blocks", "double_block", DOUBLE),),
           width_at="hidden_size_x", cond_width_at="t5_y_embedder.to_kv.in_features"),
)
