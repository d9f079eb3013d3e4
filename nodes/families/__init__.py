"""Registry of supported model families: the diffusion model's class picks the adapter."""
from __future__ import annotations

from typing import List

import torch

from . import flux, nohook, others, pixart, sd3, wan
from .base import Family, Stage

FAMILIES: List[Family] = [*wan.FAMILIES, *flux.FAMILIES, *sd3.FAMILIES, *others.FAMILIES, *pixart.FAMILIES,
                          *nohook.FAMILIES]

# Families ComfyUI can load but BlockDance does not reach yet, with the reason shown to the user.
UNSUPPORTED = {
    "comfy.ldm.cosmos.model.GeneralDIT":
        "Cosmos 1.0 adds its position embedding into the hidden state in place before every block "
        "(GeneralDIT._forward, core v0.8.0), so skipped blocks would pile it up; only Cosmos Predict2 / Anima are supported",
}


class UnsupportedModelError(ValueError):
    """The model's class is not one BlockDance knows how to hook."""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def detect(diffusion_model: torch.nn.Module) -> Family:
    """The family of the most specific class in the model's MRO that an adapter serves."""
    for cls in type(diffusion_model).__mro__:
        path = class_path(cls)
        if path in UNSUPPORTED:
            raise UnsupportedModelError(f"BlockDance cannot patch {path}: {UNSUPPORTED[path]}.")
        for family in FAMILIES:
            if path in family.classes:
                return family
    raise UnsupportedModelError(
        f"BlockDance does not support the diffusion model {class_path(type(diffusion_model))}; "
        f"supported families: {', '.join(f.name for f in FAMILIES)}. BlockDance needs a transformer "
        "(DiT) block stack; UNet models such as SD1.5/SDXL have none.")


__all__ = ["FAMILIES", "Family", "Stage", "UnsupportedModelError", "detect"]
