"""Headless Chromium (Debian's, driven by Playwright's Python package) on the real ComfyUI frontend.

Playwright's own browser downloads are not used: `chromium_path()` finds the system Chromium
(BLOCKDANCE_CHROMIUM, else `chromium` / `chromium-browser` on PATH) and `open_page` launches it with a
fresh profile. Helpers load workflows through the frontend's own loader and read its state.
"""
from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import os
import shutil
import tempfile
from urllib.parse import quote

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
# What the frontend needs to open straight onto the canvas: no first-run template browser, and no
# missing-models dialog (the examples name real model files this test server does not have); and no
# overlays drawn over the graph in screenshots (the info corner, the minimap, the zoom menu).
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingModelsWarning": False,
            "Comfy.Graph.CanvasInfo": False, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasMenu": False}


def frontend_version(root="pinned"):
    """The comfyui-frontend-package version of a static root (installed with pip, possibly --target), or
    of the package the host pins and this venv has ("pinned")."""
    if root == "pinned":
        return importlib.metadata.version("comfyui-frontend-package")
    site_dir = os.path.dirname(os.path.dirname(os.path.abspath(root)))   # <site>/comfyui_frontend_package/static
    infos = glob.glob(os.path.join(site_dir, "comfyui_frontend_package-*.dist-info"))
    if len(infos) != 1:
        raise AssertionError(f"{root}: expected .../comfyui_frontend_package/static beside one "
                             f"comfyui_frontend_package-*.dist-info, found {infos}")
    return os.path.basename(infos[0])[len("comfyui_frontend_package-"):-len(".dist-info")]


def chromium_path():
    for candidate in (os.environ.get("BLOCKDANCE_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable_reason():
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install playwright)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set BLOCKDANCE_CHROMIUM)"
    return None


@contextlib.contextmanager
def open_page(url: str):
    """A page on `url` once the frontend's app and graph exist; console errors are kept on page.errors."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.errors = []
            page.on("pageerror", lambda err: page.errors.append(str(err)))
            page.goto(url)
            page.wait_for_function("window.app?.graph && window.app.extensionManager && window.app.canvas", timeout=120000)
            yield page
        finally:
            context.close()


LOAD = """async ([url, name]) => {
  const wf = await (await fetch(url)).json();
  const missing = [];
  const original = app.showMissingNodesError;
  if (typeof original !== 'function') throw new Error('frontend has no showMissingNodesError to watch');
  app.showMissingNodesError = function (types) { missing.push(...types); return original.call(this, types); };
  try { await app.loadGraphData(wf, true, true, name); } finally { app.showMissingNodesError = original; }
  return missing.map((t) => (typeof t === 'string' ? t : t.type));
}"""


def load_template(page, module: str, name: str):
    """Load an example the way the template browser does (its JSON from the server, then the app's
    loadGraphData); `name` is its file name without .json. Returns the node types the frontend reported
    missing."""
    return page.evaluate(LOAD, [f"/api/workflow_templates/{quote(module)}/{quote(name)}.json", name])


def load_graph(page, workflow: dict, name: str):
    page.evaluate("([wf, name]) => app.loadGraphData(wf, true, true, name)", [workflow, name])


def open_dialogs(page):
    return page.evaluate("() => [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText.slice(0, 200))")
