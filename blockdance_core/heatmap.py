"""The calibration heat map as an image tensor (ComfyUI's IMAGE layout, [1, H, W, 3] in 0..1), sized
to be read in Preview Image (at least 640 px wide).

The grid: columns are sampling steps (axis "step", numbered from 1), rows are cut depths (axis "cut
depth", blocks skipped, the deepest at the top); a cell's colour is how much the output at that depth
changed from the previous step (log scale, the legend below gives the values: dark = stable, bright
= moving). The chosen schedule is drawn on it: a reuse step outlines the blocks it skips (from the
bottom row up to its cut; a range that starts after block 0, from its first block up) in its
action's colour (copy = the paper's BlockDance reuse, delta; any other action, e.g. a forecast,
gets its own colour), a cache step gets a tick above its column. A
title (e.g. the predicted error beside fewer steps) goes on top.

Pure torch, no plotting library: text is drawn with a built-in 5 x 7 bitmap font (upper case; lower
case letters are drawn as upper case).
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import torch

from .actions import StepAction

# A dark-to-bright ramp (inferno-like): black, purple, red-orange, yellow.
_RAMP = torch.tensor([[0.0, 0.0, 0.02], [0.34, 0.06, 0.43], [0.85, 0.27, 0.23], [0.99, 0.65, 0.04], [0.99, 1.0, 0.64]])
BACKGROUND = 0.12
TEXT = (0.92, 0.92, 0.92)
# A reuse step's outline by its action's mode ("blockdance" = copy the cached features).
ACTION_COLOURS = {"blockdance": (1.0, 1.0, 1.0), "delta": (0.2, 0.85, 1.0)}
OTHER_ACTION = (1.0, 0.35, 0.85)
ACTION_NAMES = {"blockdance": "copy", "delta": "delta", "forecast": "forecast"}
MIN_WIDTH = 640

GLYPH_W, GLYPH_H = 5, 7
FONT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "font5x7.txt")


def _look(action: StepAction) -> str:
    """How a reuse step is drawn: by its mode, or as a forecast (its own colour) when it extrapolates."""
    return action.mode if action.forecast.method == "copy" else "forecast"


def _load_font(path: str = FONT_FILE) -> dict:
    """The bitmap font (font5x7.txt): character -> 35 cells, row by row."""
    glyphs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                code, rows = line.split()
                glyphs[chr(int(code, 16))] = rows
    return glyphs


_GLYPHS = _load_font()


def _glyph(ch: str) -> torch.Tensor:
    rows = _GLYPHS.get(ch) or _GLYPHS.get(ch.upper()) or _GLYPHS["?"]
    return torch.tensor([c == "#" for c in rows], dtype=torch.bool).view(GLYPH_H, GLYPH_W)


def text_mask(text: str, scale: int = 2) -> torch.Tensor:
    """[H, W] bool: `text` in the bitmap font, one pixel of spacing per glyph, magnified `scale` times."""
    if not text:
        return torch.zeros(GLYPH_H * scale, 0, dtype=torch.bool)
    cols = []
    for ch in text:
        cols += [_glyph(ch), torch.zeros(GLYPH_H, 1, dtype=torch.bool)]
    mask = torch.cat(cols[:-1], dim=1)
    return mask.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def text_width(text: str, scale: int = 2) -> int:
    return max(0, len(text) * (GLYPH_W + 1) - 1) * scale


def draw_text(image: torch.Tensor, text: str, x: int, y: int, scale: int = 2, colour=TEXT, rotate: bool = False,
              anchor: str = "left") -> None:
    """Draw `text` into image [H, W, 3] at (x, y) (its top-left; anchor "center"/"right" moves x),
    clipped at the border; `rotate` turns it to read bottom to top."""
    mask = text_mask(text, scale)
    if rotate:
        mask = torch.rot90(mask, 1, (0, 1))
    h, w = mask.shape
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    H, W = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    region = image[y0:y1, x0:x1]
    region[mask[y0 - y:y1 - y, x0 - x:x1 - x]] = torch.tensor(colour, dtype=image.dtype)


def colormap(values: torch.Tensor) -> torch.Tensor:
    """values in [0, 1] (nan -> grey) -> [..., 3] RGB."""
    v = values.clamp(0, 1).nan_to_num(0.0) * (len(_RAMP) - 1)
    lo = v.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (v - lo).unsqueeze(-1)
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    rgb[values.isnan()] = 0.35
    return rgb


def _rect(image, x0, y0, x1, y1, colour, width=2):
    c = torch.tensor(colour, dtype=image.dtype)
    image[y0:y1, x0:x0 + width] = c
    image[y0:y1, x1 - width:x1] = c
    image[y0:y0 + width, x0:x1] = c
    image[y1 - width:y1, x0:x1] = c


def _every(count: int, room: int, label_px: int) -> int:
    """Label every k-th of `count` items spaced `room` px apart so labels `label_px` wide do not touch."""
    k = 1
    while k * room < label_px + 6:
        k += 1 if k < 5 else 5
    return k


def _sci(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def render(change: torch.Tensor, cuts: Sequence[int], actions: Optional[Sequence[StepAction]] = None,
           cell: Optional[int] = None, title: Sequence[str] | str = (), num_blocks: Optional[int] = None,
           min_width: int = MIN_WIDTH) -> torch.Tensor:
    """change: [cuts, steps] (probe.Measurement.step_change); cuts: blocks skipped per row (ascending);
    actions: the chosen schedule's StepAction per step, drawn on top; title: one or more lines
    above the grid. Returns [1, H, W, 3] at least `min_width` px wide."""
    n_cuts, n_steps = change.shape
    titles = [title] if isinstance(title, str) else list(title)
    left, right = (96, 24) if cell is None else (0, 0)
    cw = cell or max(6, min(48, (min_width - left - right) // max(n_steps, 1)))   # a step's column width
    ch = cell or max(10, min(28, 360 // max(n_cuts, 1)))                           # a cut's row height
    grid_w, grid_h = n_steps * cw, n_cuts * ch
    title_h = 20 * len(titles) + (8 if titles else 0)
    tick_h = max(6, min(12, cw // 2)) + 4                                          # room for the cache ticks
    y_grid = 8 + title_h + tick_h
    axis_h = 44 if cell is None else 0
    modes_used = []
    for action in actions or ():
        if action.kind.value == "reuse" and _look(action) not in modes_used:
            modes_used.append(_look(action))
    legend_lines = [f"REUSE ({ACTION_NAMES.get(m, m)}): THE BLOCKS IT SKIPS" for m in modes_used or ["blockdance"]]
    legend_h = 44 + 20 * (1 + len(legend_lines)) if cell is None else 0
    height = y_grid + grid_h + axis_h + legend_h
    texts = [text_width(t) + 32 for t in titles] + [left + text_width(t) + 40 for t in legend_lines]
    texts.append(left + min(240, min_width // 3) + 14 + text_width("CHANGE FROM THE PREVIOUS STEP") + 16)
    width = max([min_width, *texts] if cell is None else [0])
    width = max(width, left + grid_w + right)
    x_grid = left + (width - left - right - grid_w) // 2
    image = torch.full((height, width, 3), BACKGROUND)

    finite = change[torch.isfinite(change)]
    logv = change.clamp_min(1e-8).log10()
    if finite.numel():
        vmin, vmax = max(float(finite.min()), 1e-8), max(float(finite.max()), 1e-8)
        lo, hi = math.log10(vmin), math.log10(vmax)
        scaled = (logv - lo) / max(hi - lo, 1e-6)
    else:
        vmin = vmax = lo = hi = None
        scaled = torch.zeros_like(change)
    scaled[~torch.isfinite(change)] = math.nan
    grid = colormap(scaled.flip(0))                                                # deepest cut on top
    image[y_grid:y_grid + grid_h, x_grid:x_grid + grid_w] = grid.repeat_interleave(ch, 0).repeat_interleave(cw, 1)

    for i, line in enumerate(titles):
        draw_text(image, line, width // 2, 8 + 20 * i, anchor="center")
    for k, action in enumerate(list(actions or ())[:n_steps]):
        kind, cut = action.kind.value, action.blocks.stop
        x0, x1 = x_grid + k * cw, x_grid + (k + 1) * cw
        colour = ACTION_COLOURS.get(_look(action), OTHER_ACTION)
        if kind == "cache":
            mid = (x0 + x1) // 2
            image[y_grid - tick_h + 2:y_grid - 2, max(x0, mid - 1):min(x1, mid + 1)] = torch.tensor(TEXT)
        elif kind == "reuse":
            below = sum(1 for c in cuts if c <= action.blocks.start)               # rows under the range's start
            covered = sum(1 for c in cuts if action.blocks.start < c <= cut)        # rows inside the skipped range
            y1 = y_grid + grid_h - below * ch
            _rect(image, x0, y1 - covered * ch, x1, y1, colour, width=2 if min(cw, ch) >= 8 else 1)
    if cell is not None:
        return image.unsqueeze(0)

    # Axes: step numbers below the columns, cut depths (blocks skipped) beside the rows.
    y_axis = y_grid + grid_h + 4
    every = _every(n_steps, cw, text_width(str(n_steps)))
    for k in range(n_steps):
        if k % every == 0 or k == n_steps - 1 and (n_steps - 1) % every >= every // 2 + 1:
            draw_text(image, str(k + 1), x_grid + k * cw + cw // 2, y_axis, anchor="center")
    draw_text(image, "STEP", x_grid + grid_w // 2, y_axis + 20, anchor="center")
    every = max(1, math.ceil(16 / ch))
    last = (n_cuts - 1) % every >= max(1, every // 2) and (n_cuts - 1) % every * ch >= 16
    total = num_blocks or (max(cuts) if cuts else 0)
    for r, cut in enumerate(cuts):   # row r from the bottom
        if r % every == 0 or r == n_cuts - 1 and last:
            y = y_grid + grid_h - (r + 1) * ch + (ch - 14) // 2
            draw_text(image, str(cut), x_grid - 6, y, anchor="right")
    draw_text(image, f"CUT DEPTH (OF {total})" if total else "CUT DEPTH", 8,
              y_grid + grid_h // 2 - text_width("CUT DEPTH (OF 00)") // 2, rotate=True)

    # Legend: the colour ramp with its values, then what the marks mean.
    y_leg = y_grid + grid_h + axis_h + 4
    bar_w = min(240, width // 3)
    ramp = colormap(torch.linspace(0, 1, bar_w)).unsqueeze(0).expand(12, bar_w, 3)
    image[y_leg:y_leg + 12, left:left + bar_w] = ramp
    if vmin is not None:
        draw_text(image, _sci(vmin), left, y_leg + 16)
        draw_text(image, _sci(vmax), left + bar_w, y_leg + 16, anchor="right")
    draw_text(image, "CHANGE FROM THE PREVIOUS STEP", left + bar_w + 14, y_leg)
    draw_text(image, "(LOG SCALE: DARK = STABLE)", left + bar_w + 14, y_leg + 18)
    y = y_leg + 44
    image[y:y + 14, left + 7:left + 9] = torch.tensor(TEXT)
    draw_text(image, "CACHE STEP (TICK ABOVE ITS COLUMN)", left + 26, y)
    for i, (mode, line) in enumerate(zip(modes_used or ["blockdance"], legend_lines)):
        yy = y + 20 * (i + 1)
        _rect(image, left, yy, left + 16, yy + 14, ACTION_COLOURS.get(mode, OTHER_ACTION))
        draw_text(image, line, left + 26, yy)
    return image.clamp(0, 1).unsqueeze(0)
