"""ComfyUI-BlockDance: faster DiT sampling by reusing block features across denoising steps.

ComfyUI imports this package from custom_nodes/. Everything inside imports relatively, because
ComfyUI has a top-level module called `nodes` of its own.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
