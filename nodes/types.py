"""The pack's own socket types, declared once."""
from comfy_api.latest import io

Schedule = io.Custom("BLOCKDANCE_SCHEDULE")   # a measured per-step plan (BlockDance Calibrate / Load Schedule)
Policy = io.Custom("BLOCKDANCE_POLICY")       # a learned per-instance policy (BlockDance Ada Loader)
