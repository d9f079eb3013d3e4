"""PixArt-alpha / -sigma (the paper's model). Its forward calls `block(x, y, t0, y_lens, (H, W))`
with no block hook and drops transformer_options (pixart/pixartms.py:211, 219-235), so the
block list is swapped for the duration of each forward (nodes/swap.py)."""
from .base import Family, Stage, call_with_first_arg, first_arg

FAMILIES = (
    Family("pixart", ("comfy.ldm.pixart.pixartms.PixArtMS",),
           (Stage("blocks", None, swap_state=first_arg, swap_call=call_with_first_arg),),
           notes="28 blocks; container swap inside the APPLY_MODEL wrapper"),
)
