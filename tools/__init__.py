"""Developer tools that write files shipped with the pack (not loaded by ComfyUI; left out of the
Registry package by .comfyignore): `python -m tools.examples` writes example_workflows/*.json."""
