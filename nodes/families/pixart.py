"""PixArt-alpha / -sigma (the paper's model, 28 blocks). Its forward calls `block(x, y, t0, y_lens,
(H, W))` with no block hook and drops transformer_options (PixArtMS.forward_orig, core v0.8.0), so
the block list is swapped for the duration of each forward, inside the APPLY_MODEL wrapper
(nodes/swap.py)."""
from .base import Family, Stage, call_with_first_arg, first_arg

FAMILIES = (
    Family("pixart", ("comfy.ldm.pixart.pixartms.PixArtMS",),
           (Stage("blocks", None, swap_state=first_arg, swap_call=call_with_first_arg),),
           width_at="hidden_size", cond_width_at="y_embedder.y_proj.fc1.in_features"),
)
