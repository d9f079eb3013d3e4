"""Import-only stand-in for torchaudio on CPU-only test machines.

ComfyUI core >= 0.20 imports torchaudio at module level (comfy/sd.py via the LTX audio VAE, the
gemma4 text encoder, comfy_api/latest/_ui.py), but PyPI's torchaudio wheel that matches the CPU torch
build links CUDA libraries and cannot be imported. Nothing the BlockDance tests exercise calls into
torchaudio, so this stand-in only satisfies the imports. Any real use fails loudly instead of
silently computing garbage.
"""
__version__ = "0.0.0+blockdance-standin"


def __getattr__(name):
    raise AttributeError(
        f"torchaudio.{name} is unavailable: this is the BlockDance CPU test stand-in, "
        "install a real torchaudio build to use it")
