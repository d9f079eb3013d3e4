"""Import-only stand-in for torchvision on CPU-only test machines.

ComfyUI imports torchvision at module level (cascade, cosmos, ace), but PyPI's torchvision wheel
that matches the CPU torch build links CUDA libraries and cannot be imported. Nothing the
BlockDance tests exercise calls into torchvision, so this stand-in only satisfies the imports.
Any real use fails loudly instead of silently computing garbage.
"""
__version__ = "0.0.0+blockdance-standin"


def __getattr__(name):
    raise AttributeError(
        f"torchvision.{name} is unavailable: this is the BlockDance CPU test stand-in, "
        "install a real torchvision build to use it")


def unavailable(name):
    """A stand-in for a function core imports by name: importing it works, calling it fails loudly."""
    def call(*args, **kwargs):
        raise RuntimeError(f"{name} is unavailable: this is the BlockDance CPU test stand-in, "
                           "install a real torchvision build to use it")
    call.__name__ = call.__qualname__ = name.rsplit(".", 1)[-1]
    return call
