"""Pictures of the graph for the docs (template thumbnails, the README's screenshot), cropped clean
from the canvas.

The workflow's whole graph (its group, whose title names the model, and every node) is fitted into a
large viewport at up to 100% zoom, so nodes draw at full detail and nothing is cut off; a thumbnail is
that picture scaled down to THUMB_WIDTH. The canvas's own overlays (info corner, minimap, zoom menu)
are off through bd_browser.SETTINGS, so the crop holds the graph only.
"""
from __future__ import annotations

THUMB_WIDTH = 640
SHOT_VIEWPORT = {"width": 2400, "height": 1900}
MARGIN = 24   # screen px kept free around the fitted graph
PAD = 16   # graph units of canvas shown around it

# Fit the graph box [x, y, w, h] into the frontend's free canvas area (the panel right of the sidebar
# and below the top bar) and return its rectangle on screen.
FIT = """([[x, y, w, h], margin]) => {
  const canvas = app.canvas.canvas.getBoundingClientRect();
  const panel = document.querySelector('.graph-canvas-panel')?.getBoundingClientRect() ?? canvas;
  const ds = app.canvas.ds;
  const scale = Math.min((panel.width - 2 * margin) / w, (panel.height - 2 * margin) / h, 1);
  const left = panel.left - canvas.left + (panel.width - w * scale) / 2;
  const top = panel.top - canvas.top + (panel.height - h * scale) / 2;
  ds.scale = scale;
  ds.offset[0] = left / scale - x;
  ds.offset[1] = top / scale - y;
  app.canvas.setDirty(true, true);
  return { x: canvas.left + left, y: canvas.top + top, width: w * scale, height: h * scale, scale };
}"""
VIEW = "() => [app.canvas.ds.scale, ...app.canvas.ds.offset]"
SET_VIEW = "([s, x, y]) => { const ds = app.canvas.ds; ds.scale = s; ds.offset[0] = x; ds.offset[1] = y; app.canvas.setDirty(true, true); }"


def graph_box(workflow: dict):
    """The box that holds the workflow's group(s) and nodes (title bars included) with PAD around, in
    graph units."""
    boxes = [g["bounding"] for g in workflow.get("groups", [])]
    boxes += [[n["pos"][0], n["pos"][1] - 30, n["size"][0], n["size"][1] + 30] for n in workflow["nodes"]]
    x0, y0 = min(b[0] for b in boxes) - PAD, min(b[1] for b in boxes) - PAD
    x1, y1 = max(b[0] + b[2] for b in boxes) + PAD, max(b[1] + b[3] for b in boxes) + PAD
    return [x0, y0, x1 - x0, y1 - y0]


def fitted_graph_shot(page, workflow: dict, png: str) -> dict:
    """Screenshot the loaded workflow's whole graph, fitted, into `png`; the view and viewport are put
    back afterwards. Returns the fitted rectangle (with the zoom used)."""
    viewport, view = page.viewport_size, page.evaluate(VIEW)
    page.set_viewport_size(SHOT_VIEWPORT)
    try:
        page.wait_for_timeout(500)   # the canvas takes the new size
        rect = page.evaluate(FIT, [graph_box(workflow), MARGIN])
        page.wait_for_timeout(700)   # DOM widgets follow the new view on the next frames
        page.screenshot(path=png, clip={k: rect[k] for k in ("x", "y", "width", "height")})
        return rect
    finally:
        page.set_viewport_size(viewport)
        page.wait_for_timeout(300)
        page.evaluate(SET_VIEW, view)


def write_thumbnail(png: str, jpg: str) -> None:
    """The template browser's thumbnail: the fitted graph, THUMB_WIDTH px wide."""
    from PIL import Image
    with Image.open(png) as shot:
        shot = shot.convert("RGB")
        shot.resize((THUMB_WIDTH, round(shot.height * THUMB_WIDTH / shot.width)), Image.LANCZOS).save(
            jpg, "JPEG", quality=85, optimize=True)
