"""The pack's own socket types, declared once."""
from comfy_api.latest import io

Schedule = io.Custom("BLOCKDANCE_SCHEDULE")   # a measured per-step plan (BlockDance Calibrate / Load Schedule)
Policy = io.Custom("BLOCKDANCE_POLICY")       # a learned per-instance policy (BlockDance Ada Loader)

CATEGORY = "model_patches/blockdance"


def schema(node_id: str, display_name: str, **fields) -> io.Schema:
    """A BlockDance node's schema (every node of the pack sits in one category)."""
    return io.Schema(node_id=node_id, display_name=display_name, category=CATEGORY, **fields)
