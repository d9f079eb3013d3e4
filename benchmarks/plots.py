"""Pareto plot (speedup vs PSNR) and sample grids, drawn with Pillow (ComfyUI already has it)."""
from __future__ import annotations

import math
from typing import Dict, List

import torch
from PIL import Image, ImageDraw

from .reference import data

COLORS = {"calibrated": (148, 103, 189), "blockdance": (214, 39, 40), "delta": (255, 127, 14), "easycache": (31, 119, 180),
          "lazycache": (44, 160, 44), "fewer_steps": (120, 120, 120), "baseline": (0, 0, 0),
          "delta_dit": (188, 189, 34), "calibrated_forecast": (227, 119, 194), "calibrated_ranges": (23, 190, 207),
          "spectrum": (140, 86, 75), "taylorseer": (0, 0, 128)}
PANEL_W, PANEL_H, MARGIN = 520, 380, 60


def _panel(draw, rows, x0, title):
    finite = [r["psnr_mean"] for r in rows if not math.isinf(r["psnr_mean"])]
    y_lo, y_hi = (math.floor(min(finite) / 5) * 5, math.ceil(max(finite) / 5) * 5 + 5) if finite else (0, 50)
    x_lo, x_hi = 0.9, max(1.1, max(r["speedup"] for r in rows) * 1.05)
    left, top, right, bottom = x0 + MARGIN, MARGIN, x0 + PANEL_W - 20, PANEL_H - 50

    def xy(speedup, psnr):
        psnr = y_hi if math.isinf(psnr) else psnr
        return (left + (speedup - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (psnr - y_lo) / (y_hi - y_lo) * (bottom - top))

    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text((left, top - 40), title, fill=(0, 0, 0))
    draw.text(((left + right) / 2 - 60, bottom + 28), "measured speedup (x)", fill=(0, 0, 0))
    draw.text((x0 + 4, top - 20), "PSNR dB vs uncached (top edge = identical)", fill=(0, 0, 0))
    for k in range(6):
        sx = x_lo + k * (x_hi - x_lo) / 5
        sy = y_lo + k * (y_hi - y_lo) / 5
        draw.text((xy(sx, y_lo)[0] - 10, bottom + 6), f"{sx:.2f}", fill=(0, 0, 0))
        draw.text((left - 34, xy(x_lo, sy)[1] - 6), f"{sy:.0f}", fill=(0, 0, 0))
    for method, color in COLORS.items():
        points = sorted((r["speedup"], r["psnr_mean"]) for r in rows if r["method"] == method)
        front = [xy(*p) for i, p in enumerate(points) if all(q[1] < p[1] for q in points[i + 1:])]
        if len(front) > 1:
            draw.line(front, fill=color, width=2)  # the method's Pareto front; dots are every configuration
        for cx, cy in (xy(*p) for p in points):
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=color)
    for i, (method, color) in enumerate(COLORS.items()):
        draw.rectangle([right - 140, top + 8 + 14 * i, right - 130, top + 18 + 14 * i], fill=color)
        draw.text((right - 125, top + 6 + 14 * i), method, fill=(0, 0, 0))


def pareto_plot(rows: List[dict], path: str) -> None:
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    image = Image.new("RGB", (PANEL_W * len(samplers), PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for i, sampler in enumerate(samplers):
        _panel(draw, [r for r in rows if r["sampler"] == sampler], i * PANEL_W, f"sampler: {sampler}")
    image.save(path)


def _digits_row(latents: torch.Tensor, per_class: int, from_latent, scale: int = 3) -> Image.Image:
    images = from_latent(latents[::per_class][:10])
    pixels = ((images[:, 0] + 1) * 127.5).clamp(0, 255).byte()
    row = torch.cat(list(pixels), dim=1).numpy()
    return Image.fromarray(row, mode="L").resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST)


def sample_grid(grids: Dict[str, list], per_class: int, path: str, from_latent=data.from_latent) -> None:
    """Per sampler, one row per method (BlockDance / delta N=2, the 2x calibrated schedule, the
    mid-threshold EasyCache / LazyCache, fewer steps matched to BlockDance N=2), one digit per class."""
    def pick(configs, method, **params):
        for c in configs:
            if c.method == method and all(c.params.get(k) == v for k, v in params.items()):
                return c
        return None

    rows = []
    for sampler, configs in grids.items():
        bd = pick(configs, "blockdance", N=2, depth=0.75)
        matched = min((c for c in configs if c.method == "fewer_steps"),
                      key=lambda c: abs(c.block_calls - bd.block_calls), default=None) if bd else None
        chosen = [pick(configs, "baseline"), bd, pick(configs, "delta", N=2, depth=0.75),
                  pick(configs, "calibrated", target_speedup=2.0),
                  pick(configs, "easycache", reuse_threshold=0.1), pick(configs, "lazycache", reuse_threshold=0.1), matched]
        rows += [(f"{sampler}: {c.label}", _digits_row(c.output, per_class, from_latent)) for c in chosen if c is not None]
    label_w = 300
    width = label_w + max(img.width for _, img in rows)
    height = sum(img.height + 4 for _, img in rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for label, img in rows:
        draw.text((4, y + img.height // 2 - 6), label, fill=(0, 0, 0))
        canvas.paste(img.convert("RGB"), (label_w, y))
        y += img.height + 4
    canvas.save(path)
