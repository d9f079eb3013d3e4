"""Flux.1 (dev/schnell/Fill/Kontext/Krea), Flux.2 and Chroma / Chroma Radiance.

Double blocks carry {img, txt}; single blocks see cat(txt, img), text first
(comfy/ldm/flux/model.py:228, chroma/model.py:227). Kontext reference tokens are already
part of `img` when the blocks run.
"""
from .base import DOUBLE, Family, SingleStream, Stage

STAGES = (
    Stage("double_blocks", "double_block", DOUBLE),
    # Text first in every core so far; newer cores also mark it with img_slice, which is followed.
    Stage("single_blocks", "single_block", ("img",), from_block0=SingleStream("flux / chroma", "txt")),
)

FAMILIES = (
    Family("flux", ("comfy.ldm.flux.model.Flux",), STAGES,
           notes="Flux.1 19 double + 38 single, Flux.2 8 + 48; one stack of both"),
    Family("chroma", ("comfy.ldm.chroma.model.Chroma", "comfy.ldm.chroma_radiance.model.ChromaRadiance"), STAGES,
           notes="19 double + 38 single"),
)
