"""Locate a ComfyUI checkout and import it in process, on CPU.

Tests and benchmarks run real, unmodified ComfyUI inside the Python process instead of a server. Two things
make that fragile, and this module handles both:

* ``comfy.model_management`` probes the accelerator when it is first imported, so CPU mode (``--cpu``) has to be
  set on ``comfy.cli_args.args`` before anything imports it.
* ComfyUI's top-level module is called ``nodes``, and so is this pack's ``nodes/`` package. The ComfyUI root is
  therefore put at the *front* of ``sys.path``, and this pack's root is never added to it here.
"""

from __future__ import annotations

import importlib
import os
import sys

ENV_VAR = "COMFYUI_PATH"


class ComfyUIUnavailable(RuntimeError):
    """No usable ComfyUI checkout was found (callers such as tests may skip on it)."""


def _is_comfyui_root(path: str | None) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "main.py")) and os.path.isdir(os.path.join(path, "comfy"))


def _pack_root_candidates() -> list[str]:
    """This pack's root (the parent of ``benchmarks/``), as imported and with symlinks resolved."""
    here = os.path.dirname(os.path.abspath(__file__))
    roots = [os.path.dirname(here), os.path.dirname(os.path.realpath(here))]
    return list(dict.fromkeys(roots))


def find_comfyui_path() -> str | None:
    """Return the ComfyUI root to use, or None.

    Order: ``$COMFYUI_PATH`` when it points to a directory holding ``main.py`` and ``comfy/``; otherwise the
    ComfyUI root this pack is installed in, when it sits at ``<ComfyUI>/custom_nodes/<pack>/``.
    """
    env = os.environ.get(ENV_VAR)
    if env and _is_comfyui_root(env):
        return os.path.abspath(env)
    for pack_root in _pack_root_candidates():
        custom_nodes = os.path.dirname(pack_root)
        if os.path.basename(custom_nodes) == "custom_nodes":
            root = os.path.dirname(custom_nodes)
            if _is_comfyui_root(root):
                return root
    return None


def _imported_root() -> str | None:
    """Root of an already imported ``comfy`` package (e.g. when running inside a ComfyUI server)."""
    comfy = sys.modules.get("comfy")
    comfy_file = getattr(comfy, "__file__", None)
    if not comfy_file:
        return None
    return os.path.dirname(os.path.dirname(os.path.abspath(comfy_file)))


def _unavailable_message() -> str:
    env = os.environ.get(ENV_VAR)
    env_state = f"{ENV_VAR}={env!r} (no main.py and comfy/ there)" if env else f"{ENV_VAR} is not set"
    return (
        "ComfyUI not found. Looked for a directory containing main.py and comfy/ in: "
        f"${ENV_VAR} -> {env_state}; and as the parent of a custom_nodes/ folder holding this pack "
        f"({', '.join(_pack_root_candidates())}). Fix: export {ENV_VAR}=/path/to/ComfyUI "
        "(a ComfyUI checkout whose requirements are installed in this Python), or install this pack "
        "under <ComfyUI>/custom_nodes/."
    )


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _module_is_under(module, root: str) -> bool:
    module_file = getattr(module, "__file__", None)
    return bool(module_file) and os.path.realpath(module_file).startswith(os.path.realpath(root) + os.sep)


def load_comfy(path: str | None = None) -> str:
    """Import ComfyUI in process (CPU mode) and return its root; safe to call repeatedly.

    ``path`` overrides :func:`find_comfyui_path`. After this returns, ``comfy.sd``, ``comfy.samplers``,
    ``comfy.model_patcher`` and ComfyUI's top-level ``nodes`` are importable and imported.
    Raises :class:`ComfyUIUnavailable` when no checkout is found.
    """
    root = _imported_root()
    if root is not None and path is not None and not _same_dir(path, root):
        raise RuntimeError(f"ComfyUI is already imported from {root}; cannot switch to {path} in this process.")
    if root is None:
        root = path if path is not None else find_comfyui_path()
        if not _is_comfyui_root(root):
            if path is not None:
                raise ComfyUIUnavailable(f"{path!r} is not a ComfyUI root (no main.py and comfy/ there). "
                                         + _unavailable_message())
            raise ComfyUIUnavailable(_unavailable_message())
        root = os.path.abspath(root)

    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)

    foreign_nodes = sys.modules.get("nodes")
    if foreign_nodes is not None and not _module_is_under(foreign_nodes, root):
        raise RuntimeError(
            f"A module named 'nodes' is already imported from {getattr(foreign_nodes, '__file__', '?')}, which "
            f"shadows ComfyUI's nodes.py in {root}. Import this pack's nodes/ as a subpackage, and keep the "
            "pack root off sys.path before ComfyUI."
        )

    if "comfy.model_management" not in sys.modules:
        from comfy.cli_args import args

        args.cpu = True

    for name in ("comfy.sd", "comfy.samplers", "comfy.model_patcher", "nodes"):
        importlib.import_module(name)
    return root


PACK_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK_MODULE = PACK_ROOT.replace(".", "_x_")  # the sys.modules name ComfyUI's custom-node loader uses


def load_pack():
    """Import this pack the way ComfyUI's custom-node loader does (``nodes.load_custom_node``):
    a package named after its path, so its relative imports resolve inside the pack."""
    load_comfy()
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    import importlib.util
    spec = importlib.util.spec_from_file_location(PACK_MODULE, os.path.join(PACK_ROOT, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(PACK_MODULE, None)
        raise
    return module
