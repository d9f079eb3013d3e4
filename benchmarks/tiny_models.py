"""Deterministic tiny random-weight DiT models of many families, built inside real ComfyUI (CPU, fp32).

Why: block-caching code has to be exercised against ComfyUI's *real* model code (its block loops, its
``patches_replace["dit"]`` hooks, its samplers) without multi-GB checkpoints or a GPU. Each family is built the
way ComfyUI builds a loaded model -- ``comfy.supported_models.<Config>(unet_config).get_model(...)`` wrapped in a
``ModelPatcher`` -- only with a tiny ``unet_config``, and then every tensor of its state dict is filled from a
seeded generator (ComfyUI allocates layers with ``torch.empty``, so nothing may be left uninitialised).

Weights: N(0, 0.02) everywhere (biases, modulation tables, positional tables and final layers included, so no
gate or output head is zero and the output depends on every block), except the scales of normalisation
layers, which are 1. Non-persistent buffers (RoPE frequency tables) are computed by the model and left alone.
Conditioning is built directly as CONDITIONING lists, the latent as zeros in the family's own layout.

Families whose tiny shapes stock ``comfy.model_detection`` recognises can also be written to a safetensors file
(:func:`save_checkpoint`) and loaded back through ComfyUI's ``UNETLoader`` (:func:`load_via_unet_loader`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from .comfy_env import load_comfy

CPU = torch.device("cpu")
TOKENS = 16
"""Text tokens per conditioning entry."""
INIT_STD = 0.02


@dataclass
class TinyModel:
    """A ready-to-sample tiny model with matching conditioning and an empty latent."""

    family: str
    patcher: object  # comfy.model_patcher.ModelPatcher
    positive: list  # CONDITIONING: [[context, {extras}]]
    negative: list
    latent: dict  # {"samples": tensor}
    num_blocks: int
    diffusion_model_class: str
    unet_config: dict = field(default_factory=dict)  # exactly what was passed to the supported_models config


@dataclass(frozen=True)
class _Recipe:
    """How to build one family: config class, tiny unet_config, conditioning and latent layout."""

    config: str  # class name in comfy.supported_models
    unet_config: dict
    context_dim: int
    blocks: tuple[tuple[str, str], ...]  # (layout key, container attribute on the diffusion model), in order
    downscale: int = 8  # VAE spatial compression of the family's latent
    extras: Callable[[torch.Generator], dict] = lambda gen: {}
    validate: Callable[[int, int], None] | None = None


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * INIT_STD


def _pooled(dim: int) -> Callable[[torch.Generator], dict]:
    """``pooled_output`` of width ``dim`` (the families whose ``encode_adm`` reads it)."""
    return lambda gen: {"pooled_output": torch.randn(1, dim, generator=gen)}


def _no_pooled(gen: torch.Generator) -> dict:
    """T5-only families: the key must exist (``Flux.encode_adm`` indexes it) but real encoders give None."""
    return {"pooled_output": None}


def _token_mask(gen: torch.Generator) -> dict:
    """Integer attention mask over the text tokens (LTXV and Mochi require one)."""
    return {"attention_mask": torch.ones(1, TOKENS, dtype=torch.long)}


# --- one recipe per family -------------------------------------------------------------------------------------

_FLUX_LIKE = (("double_block", "double_blocks"), ("single_block", "single_blocks"))


def _flux() -> _Recipe:
    """Flux.1 dev (guidance embed, CLIP-L vector input); 2 double + 3 single blocks, hidden 128, 2 heads."""
    return _Recipe("Flux", {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, "hidden_size": 128,
        "num_heads": 2, "axes_dim": [16, 24, 24], "mlp_ratio": 4.0, "theta": 10000, "qkv_bias": True,
        "context_in_dim": 4096, "vec_in_dim": 768, "depth": 2, "depth_single_blocks": 3, "guidance_embed": True,
        "txt_ids_dims": [], "yak_mlp": False, "txt_norm": False,
    }, 4096, _FLUX_LIKE, extras=_pooled(768))


def _sd3() -> _Recipe:
    """SD3 MMDiT, 4 joint blocks; identical to what detection infers (hidden = 64 * depth, heads = depth)."""
    return _Recipe("SD3", {
        "in_channels": 16, "patch_size": 2, "out_channels": 16, "depth": 4, "input_size": None,
        "adm_in_channels": 2048,
        "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 256}},
        "num_patches": 1024, "pos_embed_max_size": 32, "pos_embed_scaling_factor": None, "x_block_self_attn_layers": [],
    }, 4096, (("double_block", "joint_blocks"),), extras=_pooled(2048))


def _wan_config(**overrides) -> dict:
    """Wan 2.1 config as detection infers it; dim 128 forces 1 head (detection uses heads = dim // 128)."""
    config = {
        "image_model": "wan2.1", "dim": 128, "out_dim": 16, "num_heads": 1, "ffn_dim": 256, "num_layers": 4,
        "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1), "qk_norm": True, "cross_attn_norm": True,
        "eps": 1e-06, "in_dim": 16, "model_type": "t2v",
    }
    config.update(overrides)
    return config


def _wan21() -> _Recipe:
    """Wan 2.1 t2v, 4 blocks."""
    return _Recipe("WAN21_T2V", _wan_config(), 4096, (("double_block", "blocks"),))


def _wan_vace() -> _Recipe:
    """Wan 2.1 VACE, 4 blocks + 2 VACE blocks (after blocks 0 and 2, outside the hook)."""
    return _Recipe("WAN21_Vace", _wan_config(model_type="vace", vace_in_dim=96, vace_layers=2), 4096,
                   (("double_block", "blocks"),))


def _pixart_validate(width: int, height: int) -> None:
    """PixArt's pos-embed base size is round(mean latent side / 64) * 64 // 2; zero raises ZeroDivisionError."""
    lw, lh = width // 8, height // 8
    if lw % 2 or lh % 2 or (lw + lh) // 2 < 33:
        raise ValueError(f"PixArt needs width and height divisible by 16 with (width + height) / 2 >= 264 px "
                         f"(e.g. 272x272); got {width}x{height}.")


def _pixart(alpha: bool) -> _Recipe:
    """PixArt; hidden 192 (divisible by 3 for alpha's size embedders), 3 heads, 4 blocks. No DiT hook.

    Alpha's micro-conditions (``width``/``height`` cond keys) are left out: the model then derives them from
    the latent size, which is what CLIPTextEncodePixArtAlpha would pass for that image."""
    return _Recipe("PixArtAlpha" if alpha else "PixArtSigma", {
        "image_model": "pixart_alpha" if alpha else "pixart_sigma", "in_channels": 4, "patch_size": 2,
        "hidden_size": 192, "num_heads": 3, "depth": 4, "model_max_length": 120 if alpha else 300,
        "micro_condition": alpha,
    }, 4096, (("blocks", "blocks"),), validate=_pixart_validate)


def _hunyuan_config(**overrides) -> dict:
    """HunyuanVideo-style config as detection infers it: hidden 128 -> 1 head of 128 = sum(axes_dim)."""
    config = {
        "image_model": "hunyuan_video", "in_channels": 16, "out_channels": 16, "patch_size": [1, 2, 2],
        "vec_in_dim": 768, "axes_dim": [16, 56, 56], "meanflow": False, "context_in_dim": 4096, "hidden_size": 128,
        "mlp_ratio": 4.0, "num_heads": 1, "depth": 2, "depth_single_blocks": 3, "theta": 256, "qkv_bias": True,
        "byt5": False, "guidance_embed": True, "use_cond_type_embedding": False, "vision_in_dim": None,
        "meanflow_sum": False,
    }
    config.update(overrides)
    return config


def _hunyuan_video() -> _Recipe:
    """HunyuanVideo 1.0 t2v; 2 double + 3 single blocks."""
    return _Recipe("HunyuanVideo", _hunyuan_config(), 4096, _FLUX_LIKE, extras=_pooled(768))


def _hunyuan_image21() -> _Recipe:
    """HunyuanImage 2.1 (2-D patches, 64-channel 32x latent, no byT5); 2 double + 3 single blocks."""
    return _Recipe("HunyuanImage21", _hunyuan_config(
        in_channels=64, out_channels=64, patch_size=[1, 1], vec_in_dim=None, axes_dim=[64, 64],
        context_in_dim=3584, guidance_embed=False,
    ), 3584, _FLUX_LIKE, downscale=32)


def _ltxv() -> _Recipe:
    """LTX-Video; 4 heads x 32, 4 blocks, 128-channel 32x latent."""
    return _Recipe("LTXV", {
        "image_model": "ltxv", "num_layers": 4, "attention_head_dim": 32, "num_attention_heads": 4,
        "cross_attention_dim": 128, "in_channels": 128, "caption_channels": 4096,
    }, 4096, (("double_block", "transformer_blocks"),), downscale=32, extras=_token_mask)


def _qwen_image() -> _Recipe:
    """Qwen-Image; 2 heads x 64, 4 blocks (its Wan21 latent format makes the latent 5-D)."""
    return _Recipe("QwenImage", {
        "image_model": "qwen_image", "in_channels": 64, "out_channels": 16, "patch_size": 2, "num_layers": 4,
        "attention_head_dim": 64, "num_attention_heads": 2, "joint_attention_dim": 3584,
        "axes_dims_rope": (16, 24, 24),
    }, 3584, (("double_block", "transformer_blocks"),))


def _auraflow() -> _Recipe:
    """AuraFlow; 2 double + 3 single layers, dim 128, 2 heads."""
    return _Recipe("AuraFlow", {
        "in_channels": 4, "out_channels": 4, "patch_size": 2, "dim": 128, "n_layers": 5, "n_double_layers": 2,
        "n_heads": 2, "global_conddim": 128, "cond_seq_dim": 2048, "max_seq": 1024,
    }, 2048, (("double_block", "double_layers"), ("single_block", "single_layers")))


def _mochi() -> _Recipe:
    """Mochi; 4 blocks, hidden 128 / 64 (video / text). Its blocks assert an x-MLP width of 12288, hence
    mlp_ratio_x 96; the T5 width is cut to 256 because its attention pool is t5_feat_dim^2-sized."""
    return _Recipe("GenmoMochi", {
        "image_model": "mochi_preview", "depth": 4, "patch_size": 2, "num_heads": 2, "hidden_size_x": 128,
        "hidden_size_y": 64, "mlp_ratio_x": 96.0, "mlp_ratio_y": 4.0, "learn_sigma": False, "in_channels": 12,
        "qk_norm": True, "qkv_bias": False, "out_bias": True, "attn_drop": 0.0, "patch_embed_bias": True,
        "posenc_preserve_area": True, "timestep_mlp_bias": True, "attend_to_padding": False,
        "timestep_scale": 1000.0, "use_t5": True, "t5_feat_dim": 256, "t5_token_length": 256, "rope_theta": 10000.0,
    }, 256, (("double_block", "blocks"),), extras=_token_mask)


def _chroma() -> _Recipe:
    """Chroma (Flux without modulation layers; an approximator makes them); 2 double + 3 single blocks."""
    return _Recipe("Chroma", {
        "image_model": "chroma", "in_channels": 64, "out_channels": 64, "patch_size": 2, "hidden_size": 128,
        "num_heads": 2, "axes_dim": [16, 24, 24], "mlp_ratio": 4.0, "theta": 10000, "qkv_bias": True,
        "context_in_dim": 4096, "vec_in_dim": None, "depth": 2, "depth_single_blocks": 3, "txt_ids_dims": [],
        "in_dim": 64, "out_dim": 128, "hidden_dim": 128, "n_layers": 2,
    }, 4096, _FLUX_LIKE, extras=_no_pooled)


def _flux2() -> _Recipe:
    """Flux.2 (global modulation, 128-channel 16x latent, context padded to 512 tokens); 2 double + 3 single."""
    return _Recipe("Flux2", {
        "image_model": "flux2", "in_channels": 128, "out_channels": 128, "patch_size": 1, "hidden_size": 128,
        "num_heads": 2, "axes_dim": [16, 16, 16, 16], "mlp_ratio": 3.0, "theta": 2000, "qkv_bias": False,
        "ops_bias": False, "global_modulation": True, "mlp_silu_act": True, "default_ref_method": "index",
        "ref_index_scale": 10.0, "txt_ids_dims": [3], "context_in_dim": 4096, "vec_in_dim": None, "depth": 2,
        "depth_single_blocks": 3, "guidance_embed": True, "yak_mlp": False, "txt_norm": False,
    }, 4096, _FLUX_LIKE, downscale=16, extras=_no_pooled)


def _hidream() -> _Recipe:
    """HiDream-I1; 2 double + 3 single MoE blocks, 2 heads x 64. No DiT hook. Needs a per-layer Llama context
    ``conditioning_llama3`` [1, layers, tokens, 4096]; ``llama_layers`` picks one layer per block."""
    return _Recipe("HiDream", {
        "image_model": "hidream", "in_channels": 16, "out_channels": 16, "patch_size": 2, "num_layers": 2,
        "num_single_layers": 3, "attention_head_dim": 64, "num_attention_heads": 2, "axes_dims_rope": [32, 16, 16],
        "caption_channels": [4096, 4096], "text_emb_dim": 2048, "llama_layers": [0, 1, 2, 3, 3],
        "num_routed_experts": 4, "num_activated_experts": 2, "max_resolution": [128, 128],
    }, 4096, (("double_stream_blocks", "double_stream_blocks"), ("single_stream_blocks", "single_stream_blocks")),
        extras=lambda gen: {"pooled_output": torch.randn(1, 2048, generator=gen),
                            "conditioning_llama3": torch.randn(1, 4, TOKENS, 4096, generator=gen)})


def _lumina2() -> _Recipe:
    """Lumina Image 2.0 (NextDiT, GQA 4/2 heads of 32); 4 main layers, 1 noise + 1 context refiner (not in the
    layout). No DiT hook."""
    return _Recipe("Lumina2", {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 128, "n_layers": 4,
        "n_refiner_layers": 1, "n_heads": 4, "n_kv_heads": 2, "qk_norm": True, "cap_feat_dim": 2304,
        "axes_dims": [8, 12, 12], "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0,
    }, 2304, (("layers", "layers"),))


def _z_image() -> _Recipe:
    """Z-Image (NextDiT with z-image modulation and pad tokens); dim 256 is the minimum because its adaLN
    input is min(dim, 256) while the time embedder always emits 256. 4 main layers. No DiT hook."""
    return _Recipe("ZImage", {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 256, "n_layers": 4,
        "n_refiner_layers": 1, "n_heads": 4, "n_kv_heads": 4, "qk_norm": True, "cap_feat_dim": 2560,
        "axes_dims": [16, 24, 24], "axes_lens": [1536, 512, 512], "rope_theta": 256.0,
        "ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32,
    }, 2560, (("layers", "layers"),))


def _cosmos() -> _Recipe:
    """Cosmos Predict2 text-to-image (MiniTrainDIT); 4 blocks, 2 heads x 64. No DiT hook."""
    return _Recipe("CosmosT2IPredict2", {
        "image_model": "cosmos_predict2", "max_img_h": 240, "max_img_w": 240, "max_frames": 128, "in_channels": 16,
        "out_channels": 16, "patch_spatial": 2, "patch_temporal": 1, "model_channels": 128, "num_blocks": 4,
        "num_heads": 2, "concat_padding_mask": True, "crossattn_emb_channels": 1024, "pos_emb_cls": "rope3d",
        "pos_emb_learnable": True, "pos_emb_interpolation": "crop", "min_fps": 1, "max_fps": 30,
        "use_adaln_lora": True, "adaln_lora_dim": 64, "extra_per_block_abs_pos_emb": False,
        "rope_h_extrapolation_ratio": 4.0, "rope_w_extrapolation_ratio": 4.0, "rope_t_extrapolation_ratio": 1.0,
        "extra_h_extrapolation_ratio": 1.0, "extra_w_extrapolation_ratio": 1.0, "extra_t_extrapolation_ratio": 1.0,
        "rope_enable_fps_modulation": False,
    }, 1024, (("blocks", "blocks"),))


_RECIPES: dict[str, Callable[[], _Recipe]] = {
    "flux": _flux,
    "sd3": _sd3,
    "wan21": _wan21,
    "wan_vace": _wan_vace,
    "pixart_alpha": lambda: _pixart(alpha=True),
    "pixart_sigma": lambda: _pixart(alpha=False),
    "hunyuan_video": _hunyuan_video,
    "ltxv": _ltxv,
    "qwen_image": _qwen_image,
    "auraflow": _auraflow,
    "mochi": _mochi,
    "chroma": _chroma,
    "flux2": _flux2,
    "hidream": _hidream,
    "lumina2": _lumina2,
    "z_image": _z_image,
    "cosmos": _cosmos,
    "hunyuan_image21": _hunyuan_image21,
}
FAMILIES = tuple(_RECIPES)

MIN_SIZE = {"pixart_alpha": 272, "pixart_sigma": 272}
"""Smallest square image side (px) per family where the default 64 px does not work."""

CHECKPOINT_FAMILIES = ("sd3", "wan21", "wan_vace", "hunyuan_video", "hunyuan_image21", "ltxv")
"""Families whose tiny checkpoints stock ``comfy.model_detection`` maps back to the same config (LTXV through
the ``config`` metadata that its detection reads)."""


# --- shared helpers --------------------------------------------------------------------------------------------

def _generator(family: str, seed: int, stream: str) -> torch.Generator:
    """Independent seeded stream per (family, seed, purpose), so families never share random numbers."""
    return torch.Generator().manual_seed(zlib.crc32(f"{family}/{seed}/{stream}".encode()))


def _is_norm(module: torch.nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


@torch.no_grad()
def _init_weights(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Fill every state-dict tensor (parameters and persistent buffers) from ``gen``."""
    norm_scales = {
        id(p) for m in module.modules() if _is_norm(m)
        for name, p in m.named_parameters(recurse=False) if name != "bias" and p.ndim == 1
    }
    for tensor in module.state_dict(keep_vars=True).values():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        if id(tensor) in norm_scales:
            tensor.fill_(1.0)
        else:
            tensor.copy_(_randn(gen, *tensor.shape))


def _make_patcher(recipe: _Recipe, gen: torch.Generator):
    import comfy.model_patcher
    import comfy.supported_models

    model_config = getattr(comfy.supported_models, recipe.config)(recipe.unet_config)
    model_config.set_inference_dtype(torch.float32, None)  # what load_diffusion_model_state_dict picks on CPU
    with torch.random.fork_rng(devices=[]):  # plain torch layers init from the global RNG; keep it untouched
        model = model_config.get_model({}, device=CPU)
    _init_weights(model.diffusion_model, gen)
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


def _conditioning(recipe: _Recipe, gen: torch.Generator) -> list:
    context = torch.randn(1, TOKENS, recipe.context_dim, generator=gen)
    return [[context, recipe.extras(gen)]]


def _empty_latent(latent_format, width: int, height: int, batch_size: int, downscale: int) -> dict:
    """Zeros shaped like ComfyUI's empty-latent nodes give them (5-D with one frame for video formats)."""
    frames = [1] if latent_format.latent_dimensions == 3 else []
    shape = [batch_size, latent_format.latent_channels, *frames, height // downscale, width // downscale]
    return {"samples": torch.zeros(shape)}


def _recipe(family: str) -> _Recipe:
    if family not in _RECIPES:
        raise ValueError(f"Unknown family {family!r}; supported: {', '.join(FAMILIES)}")
    return _RECIPES[family]()


# --- public API ------------------------------------------------------------------------------------------------

def build(family: str, seed: int = 0, width: int = 64, height: int = 64, batch_size: int = 1,
          config_overrides: dict | None = None) -> TinyModel:
    """Build a tiny ``family`` model with weights, conditioning and latent all determined by ``seed``.

    ``config_overrides`` updates the tiny ``unet_config`` (e.g. ``{"num_layers": 24}`` for a deeper Wan).

    ``width``/``height`` are image pixels (the latent is divided by the family's VAE factor; video families
    get one latent frame). Conditioning has batch 1, as text encoders produce; ComfyUI repeats it per latent.
    """
    recipe = _recipe(family)
    if config_overrides:
        recipe = dataclasses.replace(recipe, unet_config={**recipe.unet_config, **config_overrides})
    if recipe.validate is not None:
        recipe.validate(width, height)
    load_comfy()
    patcher = _make_patcher(recipe, _generator(family, seed, "weights"))
    cond_gen = _generator(family, seed, "conditioning")
    positive = _conditioning(recipe, cond_gen)
    negative = _conditioning(recipe, cond_gen)
    diffusion_model = patcher.model.diffusion_model
    return TinyModel(
        family=family,
        patcher=patcher,
        positive=positive,
        negative=negative,
        latent=_empty_latent(patcher.model.latent_format, width, height, batch_size, recipe.downscale),
        num_blocks=sum(len(getattr(diffusion_model, attr)) for _, attr in recipe.blocks),
        diffusion_model_class=type(diffusion_model).__name__,
        unet_config=recipe.unet_config,
    )


def save_checkpoint(family: str, path: str, seed: int = 0) -> str:
    """Write the diffusion-model weights of ``build(family, seed)`` as a ComfyUI-loadable safetensors file.

    Only :data:`CHECKPOINT_FAMILIES`: for the others stock detection hard-codes widths (Flux: 24 heads,
    PixArt: hidden 1152, ...) and would build a different, or much larger, model.
    """
    if family not in CHECKPOINT_FAMILIES:
        raise ValueError(f"{family!r} does not round-trip through stock model detection; "
                         f"supported: {', '.join(CHECKPOINT_FAMILIES)}")
    import safetensors.torch

    tiny = build(family, seed=seed)
    weights = tiny.patcher.model.diffusion_model.state_dict()
    state_dict = {k: v.detach().contiguous().clone() for k, v in weights.items()}  # safetensors rejects shared storage
    # LTXV detection assumes 32 heads unless the file's "config" metadata says otherwise.
    metadata = {"config": json.dumps({"transformer": tiny.unet_config})} if family == "ltxv" else None
    safetensors.torch.save_file(state_dict, path, metadata=metadata)
    return path


def load_via_unet_loader(path: str):
    """Load a diffusion-model file through ComfyUI's own ``UNETLoader`` node; returns the ModelPatcher.

    The file's folder is registered as a ``diffusion_models`` path (a process-wide ComfyUI setting).
    """
    load_comfy()
    import folder_paths
    import nodes

    folder = os.path.dirname(os.path.abspath(path))
    if folder not in folder_paths.get_folder_paths("diffusion_models"):
        folder_paths.add_model_folder_path("diffusion_models", folder)
    return nodes.UNETLoader().load_unet(os.path.basename(path), "default")[0]
