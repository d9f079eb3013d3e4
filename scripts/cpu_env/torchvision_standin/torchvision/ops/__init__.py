"""Import-only stand-in submodule; see torchvision/__init__.py.

Core >= 0.20 imports `roi_align` (comfy/ldm/sam3/detector.py, reached from comfy/model_base.py) and
`deform_conv2d` (comfy/background_removal/birefnet.py) by name at module level, so those names exist;
calling one fails loudly, as does any other attribute."""
from torchvision import __getattr__, unavailable  # noqa: F401  (any other attribute access fails loudly)

roi_align = unavailable("torchvision.ops.roi_align")
deform_conv2d = unavailable("torchvision.ops.deform_conv2d")
