"""Write the benchmark's generated results from the benchmark JSONs (no hand-typed numbers).

`python -m benchmarks.readme_results out/benchmark/results_wan21.json out/benchmark/results_hunyuan_image21.json
[--speed out/benchmark/speed.json]` replaces the text between the results (and speed) markers of
docs/results.md with one section per reference model, the users' "which settings" table between its
own markers in README.md, and copies each model's Pareto plot and sample grid beside docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = "<!-- results:start -->", "<!-- results:end -->"
SPEED_START, SPEED_END = "<!-- speed:start -->", "<!-- speed:end -->"
SETTINGS_START, SETTINGS_END = "<!-- settings:start -->", "<!-- settings:end -->"
USER_SPEEDS = (1.2, 1.5, 2.0, 2.5, 3.0, 4.0)
WINDOW = ("blockdance", "delta")   # BlockDance Patch's own window settings, no schedule
TARGETS = (1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
RIVALS = ("fewer_steps", "easycache", "lazycache")
SCHEDULES = ("calibrated", "calibrated_forecast", "calibrated_ranges")
PACK = WINDOW + SCHEDULES
# The forecasting side by side (the forecasting issue's table): the pack's best row against each peer.
SIDE_SPEEDS = (1.5, 2.0, 3.0, 4.0, 5.0)
PEERS = (("Spectrum", ("spectrum",)), ("TaylorSeer", ("taylorseer",)), ("EasyCache", ("easycache",)),
         ("LazyCache", ("lazycache",)), ("fewer steps", ("fewer_steps",)))


def winner(rows: List[dict], target: float) -> Optional[dict]:
    """The most faithful configuration (PSNR mean) among those measured at least `target` fast."""
    fast = [r for r in rows if r["speedup"] >= target]
    return max(fast, key=lambda r: r["psnr_mean"]) if fast else None


def fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1f}"


def section(rows: List[dict], header: str, images: str = "") -> str:
    out = [header, ""]
    per_sample = [r for r in rows if r.get("per_sample")]
    rows = [r for r in rows if not r.get("per_sample")]
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    summary: Dict[str, Dict[float, Optional[dict]]] = {}
    for sampler in samplers:
        srows = [r for r in rows if r["sampler"] == sampler]
        summary[sampler] = {t: winner(srows, t) for t in TARGETS}
        out += [f"**{sampler}**", "",
                "| configuration | speedup | ideal | efficiency | wall | PSNR mean | PSNR min | SSIM | class acc | FD-cls | predicted error |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in srows:
            predicted = "" if r.get("predicted_error") is None else f"{r['predicted_error']:.3f}"
            out.append(f"| {r['label']} | {r['speedup']:.2f}x | {r['ideal_speedup']:.2f}x | {r['efficiency']:.2f} | "
                       f"{r['speedup_wall']:.2f}x | {fmt(r['psnr_mean'])} | {fmt(r['psnr_min'])} | {r['ssim']:.4f} | {r['cls_acc']:.2f} | "
                       f"{r['fd_cls']:.1f} | {predicted} |")
        noise = [r["timing_noise"] for r in srows if "timing_noise" in r]
        if noise:
            out += ["", f"Timing noise floor: the uncached copies' times lie within {noise[0]:.1%} of their mean."]
        rho = [r["rank_correlation"] for r in srows if r.get("rank_correlation") is not None]
        if rho:
            out += ["", f"Rank correlation (Spearman) of the calibration's predicted error with the measured PSNR "
                        f"over every reuse configuration: {rho[0]:+.3f} (-1 = the prediction orders them exactly)."]
        out += ["", bar(srows, sampler), "", side_by_side(srows, sampler), ""]
    out += ["Most faithful configuration (highest PSNR mean) among those measured at least this fast:", "",
            "| sampler | " + " | ".join(f">= {t}x" for t in TARGETS) + " |", "|---|" + "---|" * len(TARGETS)]
    for sampler, wins in summary.items():
        cells = [f"{w['label']} ({w['speedup']:.2f}x, {fmt(w['psnr_mean'])} dB)" if w else "none this fast"
                 for w in wins.values()]
        out.append(f"| {sampler} | " + " | ".join(cells) + " |")
    out += ["", verdict(summary)]
    if per_sample:
        out += ["", per_sample_section(per_sample, rows)]
    if images:
        out += ["", images]
    return "\n".join(out)


def per_sample_section(rows: List[dict], batched: List[dict]) -> str:
    """BlockDance-Ada and the gate against the static calibrated schedule, every sample on its own, and
    against the most faithful fewer-steps run of the batched table at the same or lower compute (ideal
    speedup at least theirs: a fewer-steps run's output does not depend on the batch)."""
    out = ["**Per-instance methods, each evaluation sample sampled on its own (batch 1)**", "",
           "| sampler | configuration | speedup (1 sample) | ideal mean | ideal range | PSNR mean | PSNR min | class acc |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['sampler']} | {r['label'].replace(' per_sample=True', '')} | {r['speedup']:.2f}x | "
                   f"{r['ideal_speedup']:.2f}x | {r['ideal_min']:.2f}-{r['ideal_max']:.2f}x | {fmt(r['psnr_mean'])} | "
                   f"{fmt(r['psnr_min'])} | {r['cls_acc']:.2f} |")
    margins = []
    for r in rows:
        if r["method"] != "ada":
            continue
        static = [s for s in rows if s["method"] == "calibrated" and s["sampler"] == r["sampler"]
                  and s["params"]["target_speedup"] == r["params"]["target_speedup"]]
        if static:
            margins.append(f"{r['sampler']} {r['params']['target_speedup']}x: {r['psnr_mean'] - static[0]['psnr_mean']:+.1f} dB "
                           f"mean, {r['psnr_min'] - static[0]['psnr_min']:+.1f} dB worst")
    if margins:
        out += ["", "Ada against the static calibrated schedule at the same target: " + "; ".join(margins) + "."]
    for method in ("ada", "gate"):
        against = []
        for r in (r for r in rows if r["method"] == method):
            fewer = [f for f in batched if f["method"] == "fewer_steps" and f["sampler"] == r["sampler"]
                     and f["ideal_speedup"] >= r["ideal_speedup"] - 1e-9]
            if fewer:
                best = max(fewer, key=lambda f: f["psnr_mean"])
                against.append(f"{r['sampler']} {r['params']['target_speedup']}x: {r['psnr_mean'] - best['psnr_mean']:+.1f} dB "
                               f"(vs {best['label']})")
        if against:
            out += ["", f"{method} against fewer steps at the same or lower compute: " + "; ".join(against) + "."]
    shares = [r["policy_share"] for r in rows if r.get("policy_share") is not None]
    if shares:
        ms = [r["policy_ms"] for r in rows if r.get("policy_ms") is not None]
        out += ["", f"The policy's decision (features and network, once per run) takes {min(ms):.2f}-{max(ms):.2f} ms: "
                    f"at most {max(shares):.2%} of a run's time."]
    return "\n".join(out)


def bar(rows: List[dict], sampler: str) -> str:
    """Does the best calibrated schedule at least this fast beat fewer steps, EasyCache and LazyCache
    at the same or higher speed? One verdict per target speed."""
    parts = []
    for t in TARGETS:
        ours = [r for r in rows if r["method"] in SCHEDULES and r["speedup"] >= t]
        if not ours:
            parts.append(f"{t}x: no calibrated row this fast")
            continue
        best = max(ours, key=lambda r: r["psnr_mean"])
        rivals = [r for r in rows if r["method"] in RIVALS and r["speedup"] >= best["speedup"]]
        top = max(rivals, key=lambda r: r["psnr_mean"], default=None)
        if top is None:
            parts.append(f"{t}x: {fmt(best['psnr_mean'])} dB, no rival this fast")
        elif best["psnr_mean"] > top["psnr_mean"]:
            parts.append(f"{t}x: wins by {best['psnr_mean'] - top['psnr_mean']:.1f} dB over {top['label']}")
        else:
            parts.append(f"{t}x: LOSES to {top['label']} ({fmt(top['psnr_mean'])} vs {fmt(best['psnr_mean'])} dB)")
    return f"Calibrated schedule against fewer steps / EasyCache / LazyCache at the same or higher speed ({sampler}): " \
        + "; ".join(parts) + "."


def side_by_side(rows: List[dict], sampler: str) -> str:
    """Per speed: the most faithful row of the pack (any of its configurations) and of each peer among
    those measured at least that fast, and who wins the cell."""
    out = [f"Side by side ({sampler}): PSNR mean (dB) of the most faithful row measured at least this fast", "",
           "| speed | pack | " + " | ".join(name for name, _ in PEERS) + " | winner |",
           "|---|---|" + "---|" * len(PEERS) + "---|"]
    for t in SIDE_SPEEDS:
        ours = winner([r for r in rows if r["method"] in PACK], t)
        theirs = [(name, winner([r for r in rows if r["method"] in methods], t)) for name, methods in PEERS]
        cells = [f"{fmt(ours['psnr_mean'])} ({ours['label']}, {ours['speedup']:.2f}x)" if ours else "none"]
        cells += [fmt(w["psnr_mean"]) if w else "none" for _, w in theirs]
        present = [(n, w) for n, w in [("pack", ours)] + theirs if w is not None]
        best = max(present, key=lambda nw: nw[1]["psnr_mean"])[0] if present else "none this fast"
        out.append(f"| {t}x | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(out)


def verdict(summary: Dict[str, Dict[float, Optional[dict]]]) -> str:
    """One honest sentence per sampler, read off the winners table."""
    sentences = []
    for sampler, wins in summary.items():
        by_method: Dict[str, List[str]] = {}
        for t, w in wins.items():
            if w is not None:
                by_method.setdefault(w["method"], []).append(f"{t}x")
        if by_method:
            parts = [f"{method} at {', '.join(ts)}" for method, ts in by_method.items()]
            sentences.append(f"Under {sampler} the most faithful choice is " + "; ".join(parts) + ".")
    return " ".join(sentences)


def settings_section(models: List[tuple]) -> str:
    """What to pick for speed x fidelity, read off the benchmark: per speed and (model, sampler) the
    most faithful configuration measured at least that fast, beside the best fewer-steps run, the
    best setting of BlockDance Patch's own window and the best Spectrum and TaylorSeer rows at least
    that fast. `models`: (label, rows) pairs."""
    columns = []
    for label, rows in models:
        batched = [r for r in rows if not r.get("per_sample")]
        for sampler in dict.fromkeys(r["sampler"] for r in batched):
            columns.append((f"{label} · {sampler}", [r for r in batched if r["sampler"] == sampler]))
    out = ["| speed at least | " + " | ".join(name for name, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    schedule_wins, window_beats_fewer, both = 0, 0, 0
    for t in USER_SPEEDS:
        cells = []
        for _, rows in columns:
            best = winner(rows, t)
            fewer = winner([r for r in rows if r["method"] == "fewer_steps"], t)
            window = winner([r for r in rows if r["method"] in WINDOW], t)
            schedule_wins += bool(best and best["method"] in SCHEDULES)
            if fewer and window:
                both += 1
                window_beats_fewer += window["psnr_mean"] > fewer["psnr_mean"]
            parts = [f"**{best['label']}**: {fmt(best['psnr_mean'])} dB" if best else "nothing this fast"]
            parts.append(f"fewer steps {fmt(fewer['psnr_mean'])} dB" if fewer else "")
            parts.append(f"patch window {fmt(window['psnr_mean'])} dB" if window else "patch window: not this fast")
            for name, methods in PEERS[:2]:   # the forecasting peers, whether or not they win
                peer = winner([r for r in rows if r["method"] in methods], t)
                if peer and peer is not best:
                    parts.append(f"{name} {fmt(peer['psnr_mean'])} dB")
            cells.append("; ".join(p for p in parts if p))
        out.append(f"| {t}x | " + " | ".join(cells) + " |")
    cells_total = len(USER_SPEEDS) * len(columns)
    out += ["", f"A calibrated schedule was the most faithful choice in {schedule_wins} of {cells_total} cells. "
                f"BlockDance Patch's fixed window (no schedule) beat fewer steps in {window_beats_fewer} of the {both} "
                f"cells where both reach the speed."]
    return "\n".join(out)


def speed_section(rows: List[dict]) -> str:
    """The speed-only table (random weights at each family's real depth)."""
    first = rows[0]
    command = "--speed-only" + (" --device cuda --full-size" if first["device"] != "CPU" else "")
    out = [f"Generated from `python -m benchmarks.run {command}` ({first['device']}, {first['dtype']}, "
           f"{first['threads']} thread(s), {first['steps']} euler steps, depth 0.75 unless named, window 0.40-0.95).", "",
           "| family | blocks | image | config | seconds | speedup | ideal | efficiency | overhead per step |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        overhead = "" if r["overhead_ms_per_step"] is None else f"{r['overhead_ms_per_step']:+.2f} ms"
        if r.get("forecast_overhead") is not None:
            overhead = f"{r['forecast_overhead']:+.1%} of the copy's time"
        out.append(f"| {r['family']} | {r['blocks']} | {r['side_px']} px | {r['config']} | {r['seconds']:.3f} | "
                   f"{r['speedup']:.2f}x | {r['ideal_speedup']:.2f}x | {r['efficiency']:.2f} | {overhead} |")
    return "\n".join(out)


def replace_between(text: str, start: str, end: str, body: str, where: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"{where} has no {start} ... {end} markers")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return before + start + "\n" + body + "\n" + end + after


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results_<model>.json files written by python -m benchmarks.run")
    parser.add_argument("--speed", nargs="*", default=[], help="speed JSONs written by python -m benchmarks.run "
                        "--speed-only (CPU, and a GPU one from --device cuda --full-size)")
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"),
                        help="file holding the settings markers (the users' \"which settings\" table)")
    parser.add_argument("--results-doc", default=os.path.join(ROOT, "docs", "results.md"),
                        help="file holding the results and speed markers; plots are copied beside it")
    args = parser.parse_args(argv)
    images_dir = os.path.dirname(os.path.abspath(args.results_doc))
    os.makedirs(images_dir, exist_ok=True)
    sections, by_model = [], []
    for path in args.results:
        with open(path) as f:
            rows = json.load(f)
        name = rows[0].get("model", models.DEFAULT)
        src_dir = os.path.dirname(os.path.abspath(path))
        for kind in ("pareto", "samples"):
            shutil.copyfile(os.path.join(src_dir, f"{kind}_{name}.png"), os.path.join(images_dir, f"{kind}_{name}.png"))
        header = (f"### {models.get(name).label}\n\nGenerated by `python -m benchmarks.readme_results` from "
                  f"`python -m benchmarks.run --model {name}` ({len(rows)} configurations).")
        images = f"![Pareto plot](pareto_{name}.png)\n\n![Samples](samples_{name}.png)"   # beside the results doc
        sections.append(section(rows, header, images))
        by_model.append((models.get(name).short_label, rows))
    with open(args.results_doc) as f:
        results = f.read()
    with open(args.readme) as f:
        readme = f.read()
    results = replace_between(results, START, END, "\n\n".join(sections), args.results_doc)
    readme = replace_between(readme, SETTINGS_START, SETTINGS_END, settings_section(by_model), args.readme)
    if args.speed:
        tables = []
        for path in args.speed:
            with open(path) as f:
                tables.append(speed_section(json.load(f)))
        results = replace_between(results, SPEED_START, SPEED_END, "\n\n".join(tables), args.results_doc)
    with open(args.results_doc, "w") as f:
        f.write(results)
    with open(args.readme, "w") as f:
        f.write(readme)
    print(f"updated {args.results_doc} and {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
