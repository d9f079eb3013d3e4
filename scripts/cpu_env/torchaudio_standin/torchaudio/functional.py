"""Import-only stand-in submodule; see torchaudio/__init__.py."""
from torchaudio import __getattr__  # noqa: F401  (any attribute access fails loudly)
