"""The reference models, described as data, so that no benchmark conclusion rests on one model.

Each entry is a ComfyUI architecture that stock model detection recovers from the shipped file
(UNETLoader, no patch), trained on the same MNIST digits by the same script
(`python -m benchmarks.reference.train --model NAME`), class-conditional through its text input
(row NULL_CLASS of its class table is all zeros: unconditional, for CFG). They differ in family,
block structure and sampling shift:

- "wan21": Wan 2.1 t2v, 24 single-stream blocks with cross-attention, shift 8, latent [16, 1, 8, 8]
  (pixel-unshuffle by 4, patch 1x2x2 -> 16 tokens).
- "hunyuan_image21": HunyuanImage 2.1 (HunyuanVideo code), Flux-style two-stream double blocks then
  single blocks over image + text tokens, shift 5, latent [64, 4, 4] (pixel-unshuffle by 8,
  patch 1x1 -> 16 tokens).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch

from . import data, model as wan

HERE = os.path.dirname(os.path.abspath(__file__))
NULL_CLASS = wan.NULL_CLASS  # class-table row of the unconditional (all-zero) context


@dataclass(frozen=True)
class ReferenceModel:
    name: str                  # registry key, also the train.py --model value
    label: str                 # for reports: "Wan 2.1 t2v (24 blocks)"
    weights: str               # shipped fp16 EMA weights, stock UNETLoader layout
    class_table: str           # safetensors {"contexts": [11, tokens, dim]}
    config_class: str          # class in comfy.supported_models that detection picks
    unet_config: dict          # what was trained; detection must give the same values back
    shift: float               # ComfyUI's sampling shift for this config class (model_sampling)
    latent_shape: Tuple[int, ...]  # one sample in ComfyUI's LATENT space (before process_in)
    to_latent: Callable[[torch.Tensor], torch.Tensor]    # [N, 1, 28, 28] -> [N, *latent_shape]
    from_latent: Callable[[torch.Tensor], torch.Tensor]  # inverse, clamped to [-1, 1]
    block_containers: Tuple[str, ...]  # ModuleList attributes of the diffusion model, in run order
    context_tokens: int
    context_dim: int
    context_seed: int          # seeds this model's class table (make_class_contexts)
    work_dir: str              # default train-state folder (resumable)
    architecture: str          # export metadata
    latent_note: str           # export metadata
    objective: str             # export metadata
    inplace_residuals: bool = False  # blocks add residuals in place: train under model.saved_tensor_copies
    null_class: int = NULL_CLASS

    @property
    def short_label(self) -> str:
        """The label without its block count: "Wan 2.1 t2v"."""
        return self.label.split(" (")[0]

    @property
    def num_blocks(self) -> int:
        c = self.unet_config
        return c["num_layers"] if "num_layers" in c else c["depth"] + c["depth_single_blocks"]

    def build_comfy_model(self):
        """A fresh ComfyUI BaseModel of this architecture on CPU; weights uninitialised."""
        import comfy.supported_models
        config = getattr(comfy.supported_models, self.config_class)(dict(self.unet_config))
        return config.get_model({}, device="cpu")

    def make_class_contexts(self) -> torch.Tensor:
        return wan.make_class_contexts(self.context_seed, self.context_tokens, self.context_dim)

    def load_class_contexts(self) -> torch.Tensor:
        return wan.load_class_contexts(self.class_table)

    def empty_latent(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, *self.latent_shape)

    def blocks(self, diffusion_model: torch.nn.Module):
        """The real block modules, in the order a forward pass runs them."""
        return [b for attr in self.block_containers for b in getattr(diffusion_model, attr)]


WAN21 = ReferenceModel(
    name="wan21", label="Wan 2.1 t2v (24 blocks)", weights=wan.WEIGHTS, class_table=wan.CLASS_TABLE,
    config_class="WAN21_T2V", unet_config=wan.UNET_CONFIG, shift=wan.SHIFT, latent_shape=(16, 1, 8, 8),
    to_latent=data.to_latent, from_latent=data.from_latent, block_containers=("blocks",),
    context_tokens=wan.CONTEXT_TOKENS, context_dim=wan.CONTEXT_DIM, context_seed=1234,
    work_dir=os.path.join("out", "reference_training"),
    architecture="Wan 2.1 t2v (comfy.ldm.wan.model.WanModel)",
    latent_note="pad 28->32 with -1, pixel_unshuffle(4) -> [16, 1, 8, 8]",
    objective="flow matching, shift 8 (ComfyUI WAN21 model sampling)",
)

# As stock detection infers it (comfy/model_detection.py, "hunyuan_video" with 2-D patches and no
# vector_in): hidden 128 -> 1 head of 128 = sum(axes_dim); Qwen2.5-VL text width 3584.
HUNYUAN_IMAGE21_CONFIG = {
    "image_model": "hunyuan_video", "in_channels": 64, "out_channels": 64, "patch_size": [1, 1],
    "vec_in_dim": None, "axes_dim": [64, 64], "meanflow": False, "context_in_dim": 3584,
    "hidden_size": 128, "mlp_ratio": 4.0, "num_heads": 1, "depth": 6, "depth_single_blocks": 12,
    "theta": 256, "qkv_bias": True, "byt5": False, "guidance_embed": False,
    "use_cond_type_embedding": False, "vision_in_dim": None, "meanflow_sum": False,
}

HUNYUAN_IMAGE21 = ReferenceModel(
    name="hunyuan_image21", label="HunyuanImage 2.1 (6 double + 12 single blocks)",
    weights=os.path.join(HERE, "hunyuan_mnist_reference.safetensors"),
    class_table=os.path.join(HERE, "hunyuan_class_contexts.safetensors"),
    config_class="HunyuanImage21", unet_config=HUNYUAN_IMAGE21_CONFIG, shift=5.0, latent_shape=(64, 4, 4),
    to_latent=functools.partial(data.unshuffle_latent, factor=8),
    from_latent=functools.partial(data.shuffle_image, factor=8),
    block_containers=("double_blocks", "single_blocks"),
    context_tokens=4, context_dim=3584, context_seed=2101,
    work_dir=os.path.join("out", "reference_training_hunyuan"),
    architecture="HunyuanImage 2.1 (comfy.ldm.hunyuan_video.model.HunyuanVideo)",
    latent_note="pad 28->32 with -1, pixel_unshuffle(8) -> [64, 4, 4]",
    objective="flow matching, shift 5 (ComfyUI HunyuanImage21 model sampling)", inplace_residuals=True,
)

MODELS: Dict[str, ReferenceModel] = {m.name: m for m in (WAN21, HUNYUAN_IMAGE21)}
DEFAULT = WAN21.name


def get(name: str) -> ReferenceModel:
    if name not in MODELS:
        raise KeyError(f"unknown reference model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]
