"""ComfyUI-BlockDance: faster DiT sampling by reusing block features across denoising steps.

ComfyUI imports this package from custom_nodes/ and calls `comfy_entrypoint` (V3 nodes). Everything
inside imports relatively, because ComfyUI has a top-level module called `nodes` of its own.
"""
from .nodes import NODES, comfy_entrypoint

__all__ = ["NODES", "comfy_entrypoint"]
