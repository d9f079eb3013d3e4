"""Import-only stand-in submodule; see torchvision/__init__.py."""
from torchvision import __getattr__  # noqa: F401  (any attribute access fails loudly)
