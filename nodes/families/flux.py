"""Flux.1 (dev/schnell/Fill/Kontext/Krea), Flux.2 and Chroma / Chroma Radiance.

Double blocks carry {img, txt}; single blocks see cat(txt, img), text first (Flux.forward_orig and
Chroma.forward_orig, core v0.8.0). Kontext reference tokens are already part of `img` when the blocks
run. Flux.1 has 19 double + 38 single blocks, Flux.2 8 + 48, Chroma 19 + 38: one stack of both.
"""
from .base import DOUBLE, Family, SingleStream, Stage

STAGES = (
    Stage("double_blocks", "double_block", DOUBLE),
    # Text first in every core so far; newer cores also mark it with img_slice, which is followed.
    Stage("single_blocks", "single_block", ("img",), from_block0=SingleStream("flux / chroma", "txt")),
)

WIDTHS = dict(width_at="hidden_size", cond_width_at="txt_in.in_features")

FAMILIES = (
    Family("flux", ("comfy.ldm.flux.model.Flux",), STAGES, **WIDTHS),
    Family("chroma", ("comfy.ldm.chroma.model.Chroma", "comfy.ldm.chroma_radiance.model.ChromaRadiance"), STAGES,
           **WIDTHS),
)
