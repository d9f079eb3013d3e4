"""ComfyUI-facing side of the pack: nodes, family adapters and the hooks into sampling."""
from .patch_node import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
