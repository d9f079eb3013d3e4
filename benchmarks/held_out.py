"""What the checks that calibrate on one batch and evaluate on another share: the reference model
loaded through stock UNETLoader, the calibration batch (protocol.CALIBRATION_*) and the evaluation
digits with their noise (protocol.EVAL_*), never the same classes or seeds."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import protocol
from .calibrate_reference import calibration_inputs
from .comfy_env import load_pack
from .tiny_models import load_via_unet_loader


@dataclass
class HeldOut:
    pack: object
    ref_model: object
    model: object           # the reference model's ModelPatcher
    contexts: torch.Tensor  # class conditionings
    positive: list          # the calibration batch
    negative: list
    latent: dict
    labels: torch.Tensor    # the evaluation digits
    eval_latent: torch.Tensor
    noise: torch.Tensor

    @property
    def eval_positive(self) -> list:
        return [[self.contexts[self.labels], {}]]


def held_out(model_name: str, per_class: int) -> HeldOut:
    from .reference import models
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pack = load_pack()   # puts ComfyUI on the path
    import comfy.sample
    ref_model = models.get(model_name)
    model = load_via_unet_loader(ref_model.weights)
    contexts = ref_model.load_class_contexts()
    positive, negative, latent = calibration_inputs(ref_model, contexts)
    labels = torch.tensor(protocol.EVAL_CLASSES).repeat_interleave(per_class)
    eval_latent = comfy.sample.fix_empty_latent_channels(model, ref_model.empty_latent(len(labels)))
    noise = comfy.sample.prepare_noise(eval_latent, protocol.EVAL_SEED)
    return HeldOut(pack, ref_model, model, contexts, positive, negative, latent, labels, eval_latent, noise)
