"""The reference model's architecture and class conditioning.

Architecture: ComfyUI's own Wan 2.1 t2v (comfy.ldm.wan.model.WanModel) at a width stock model
detection reproduces (heads = dim // 128), with 24 blocks like the paper's models. Classes enter
through the text-conditioning input: each class has a fixed random context of 4 tokens x 4096;
the negative / unconditional context is all zeros (what ConditioningZeroOut gives).

The Wan names here (WEIGHTS, UNET_CONFIG, SHIFT, build_comfy_model, ...) are the first reference
model's; the class-table and trainable-RoPE helpers are shared with the others, which are all
described as data in models.py.
"""
from __future__ import annotations

import contextlib
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "wan_mnist_reference.safetensors")
CLASS_TABLE = os.path.join(HERE, "class_contexts.safetensors")

UNET_CONFIG = {
    "image_model": "wan2.1", "model_type": "t2v", "dim": 128, "num_heads": 1, "ffn_dim": 256, "num_layers": 24,
    "out_dim": 16, "in_dim": 16, "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1),
    "qk_norm": True, "cross_attn_norm": True, "eps": 1e-06,
}
CONTEXT_TOKENS = 4
CONTEXT_DIM = 4096  # Wan's text width; detection does not infer it
SHIFT = 8.0         # ComfyUI's sampling shift for Wan 2.1 (supported_models.WAN21_T2V)
NULL_CLASS = 10


def make_class_contexts(seed: int = 1234, tokens: int = CONTEXT_TOKENS, dim: int = CONTEXT_DIM) -> torch.Tensor:
    """[11, tokens, dim] (Wan: [11, 4, 4096]): classes 0-9, then the null (unconditional) context."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(10, tokens, dim, generator=g)
    return torch.cat([table, torch.zeros(1, tokens, dim)])


def load_class_contexts(path: str = CLASS_TABLE) -> torch.Tensor:
    from safetensors.torch import load_file
    return load_file(path)["contexts"]


def build_comfy_model():
    """A fresh ComfyUI BaseModel (WAN21) with this architecture; weights uninitialised."""
    import comfy.supported_models
    return comfy.supported_models.WAN21_T2V(dict(UNET_CONFIG)).get_model({}, device="cpu")


def _rope1_differentiable(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """ComfyUI's pure-torch RoPE (comfy/ldm/flux/math.py fallback), written out of place."""
    x_ = x.to(dtype=freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    return (freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]).reshape(*x.shape).type_as(x)


def _rope_differentiable(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor):
    return _rope1_differentiable(xq, freqs_cis), _rope1_differentiable(xk, freqs_cis)


@contextlib.contextmanager
def trainable_rope():
    """comfy_kitchen's RoPE kernels have no backward; training swaps in the reference formula:
    Wan's own binding of apply_rope1, and apply_rope in comfy/ldm/flux/math.py, which the Flux-style
    double and single blocks of HunyuanVideo / HunyuanImage 2.1 call through attention()."""
    import comfy.ldm.flux.math as flux_math
    import comfy.ldm.wan.model as wan_model
    originals = wan_model.apply_rope1, flux_math.apply_rope
    wan_model.apply_rope1, flux_math.apply_rope = _rope1_differentiable, _rope_differentiable
    try:
        yield
    finally:
        wan_model.apply_rope1, flux_math.apply_rope = originals


@contextlib.contextmanager
def saved_tensor_copies():
    """Autograd keeps its own copy of every activation it saves for backward.

    ComfyUI's Flux-style blocks (HunyuanVideo / HunyuanImage 2.1 double and single blocks) add
    their residuals in place (`img += ...`, `x += ...`) because ComfyUI only runs inference;
    autograd would then find a saved tensor modified and refuse to differentiate. Copying
    non-leaf tensors at save time keeps the saved values exact (the gradients are the ones of the
    same forward written out of place) at the price of one copy per saved activation. Parameters
    (leaves) are saved as they are: nothing writes to them during a forward pass."""
    import torch.autograd.graph
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t if t.is_leaf else t.clone(), lambda t: t):
        yield

