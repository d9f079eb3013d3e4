"""Families whose forward calls its blocks directly, without a block hook; reached through the
per-forward container swap (nodes/swap.py)."""
from .base import Family, Stage, call_with_first_arg, first_arg


def _first_arg_stage(container: str) -> Stage:
    return Stage(container, None, swap_state=first_arg, swap_call=call_with_first_arg)


def _hidream_double(block, state, args, kwargs):
    img, txt = block(*args, **{**kwargs, "image_tokens": state["img"], "text_tokens": state["txt"]})
    return {"img": img, "txt": txt}


def _hidream_single(block, state, args, kwargs):
    return block(*args, **{**kwargs, "image_tokens": state})


FAMILIES = (
    # Double blocks take keyword tokens and return (img, txt); text_tokens is cat(initial text,
    # this block's Llama layer) and the loop trims it back. Single blocks see cat(hidden, Llama
    # layer j), so the block-0 input has no fixed place in their layout: delta mode needs the
    # cache point among the double blocks there (HiDreamImageTransformer2DModel.forward, core v0.8.0).
    Family("hidream", ("comfy.ldm.hidream.model.HiDreamImageTransformer2DModel",), (
        Stage("double_stream_blocks", None,
              swap_state=lambda args, kwargs: {"img": kwargs["image_tokens"], "txt": kwargs["text_tokens"]},
              swap_call=_hidream_double, swap_output=lambda state: (state["img"], state["txt"]),
              swap_params=("image_tokens", "text_tokens")),
        Stage("single_stream_blocks", None, swap_state=lambda args, kwargs: kwargs["image_tokens"],
              swap_call=_hidream_single, swap_params=("image_tokens",), delta_ok=False),
    ), width_at="inner_dim", cond_width_at="caption_projection.0.linear.in_features"),
    # Lumina2 26, Z-Image 30 main layers; the 2+2 refiner layers always run.
    Family("lumina2", ("comfy.ldm.lumina.model.NextDiT",), (_first_arg_stage("layers"),),
           width_at="dim", cond_width_at="cap_embedder.1.in_features"),
    Family("cosmos", ("comfy.ldm.cosmos.predict2.MiniTrainDIT",), (_first_arg_stage("blocks"),),
           width_at="model_channels", cond_width_at="blocks.0.cross_attn.k_proj.in_features"),
)
