"""Write example_workflows/<name>.jpg: each example as the frontend opens it (the template browser
shows these thumbnails beside the workflow's name).

    COMFYUI_PATH=... python tests/browser/thumbnails.py [NAME ...]   # all examples, or only those named

Starts a ComfyUI server with this pack, opens each example through the frontend's loader in headless
Chromium (after its plan previews are drawn), screenshots the view and saves a 640 px wide JPEG.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.dirname(os.path.dirname(HERE)))

import bd_browser  # noqa: E402
import bd_server  # noqa: E402
import bd_examples as examples  # noqa: E402

WIDTH = 640


def main(names) -> None:
    from PIL import Image

    from benchmarks.comfy_env import load_comfy

    unknown = sorted(set(names) - set(examples.EXAMPLES))
    if unknown:
        sys.exit(f"no example named {', '.join(unknown)}; the examples: {', '.join(examples.EXAMPLES)}")
    reason = bd_browser.unavailable_reason()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as base:
        server = bd_server.ComfyServer(load_comfy(), base, settings=bd_browser.SETTINGS)
        try:
            server.wait_ready()
            with bd_browser.open_page(server.url) as page:
                page.evaluate("() => app.extensionManager.setting.set('Comfy.Minimap.Visible', false)")
                for name in names or examples.EXAMPLES:
                    assert bd_browser.load_template(page, bd_server.PACK_DIR_NAME, name) == []
                    time.sleep(1.5)   # the strips' plan previews
                    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": 60, "y": 90, "width": 1340, "height": 760})))
                    shot = shot.convert("RGB").resize((WIDTH, round(shot.height * WIDTH / shot.width)), Image.LANCZOS)
                    path = os.path.join(bd_server.EXAMPLES, name + ".jpg")
                    shot.save(path, "JPEG", quality=82, optimize=True)
                    print(f"wrote {os.path.relpath(path, bd_server.PACK_ROOT)}")
        finally:
            server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
