"""ComfyUI-BlockDance: faster DiT sampling by reusing block features across denoising steps.

ComfyUI imports this package from custom_nodes/ and calls `comfy_entrypoint` (V3 nodes). Everything
inside imports relatively, because ComfyUI has a top-level module called `nodes` of its own.
"""
from .nodes import NODES, comfy_entrypoint
WEB_DIRECTORY = "./web"  # the per-step strip and headline drawn on BlockDance nodes

__all__ = ["NODES", "comfy_entrypoint"]
