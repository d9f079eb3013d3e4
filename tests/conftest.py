"""Make the repository importable for tests without shadowing ComfyUI's own top-level `nodes`.

The repo root is appended (not prepended) to sys.path: `blockdance_core` and `benchmarks` resolve
here, while `nodes` resolves to ComfyUI once the host tests put ComfyUI first. The pack itself is
imported the way ComfyUI imports custom nodes (tests/host/conftest.py).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)
# Test helpers (toy_dit, helpers) are plain modules beside the tests (import mode is importlib).
for sub in ("core", "host"):
    sys.path.append(os.path.join(ROOT, "tests", sub))

os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch
    torch.set_num_threads(1)
except ImportError:  # the README's test command installs torch; a bare interpreter says so below
    pass
