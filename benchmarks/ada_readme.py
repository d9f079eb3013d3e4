"""The README's three Ada tables (issue 19), generated from the saved benchmark JSONs (no hand-typed numbers).

`python -m benchmarks.ada_readme` reads docs/oracle_<model>.json (benchmarks.oracle_ceiling),
docs/ada_<model>_<sampler>_<split>.json (benchmarks.ada_check) and docs/amortised_<model>_<target>x.json
(benchmarks.amortised_check) and replaces the text between the ada markers of README.md; `--check` only
says whether the README is current (the tests call it).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import List

from .readme_results import ROOT, replace_between

START, END = "<!-- ada:start -->", "<!-- ada:end -->"
DOCS = os.path.join(ROOT, "docs")


def _load(pattern: str) -> List:
    out = []
    for path in sorted(glob.glob(os.path.join(DOCS, pattern))):
        with open(path) as f:
            data = json.load(f)
        out += data if isinstance(data, list) else [data]
    return out


def _ci(row: dict) -> str:
    lo, hi = row["delta_ci95"]
    return f"{row['delta_mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def oracle_table(results: List[dict]) -> List[str]:
    targets = results[0]["targets"]
    out = ["| ceiling: per-item best − shipped static, dB [95% CI] | " + " | ".join(f"{t:g}x" for t in targets) + " |",
           "|---|" + "---|" * len(targets)]
    for r in results:
        cells = []
        for t in targets:
            s = r["summary"][f"{t:g}"]
            cell = _ci(s["best"])
            if "nonclair" in s:
                cell += f"; planned before the run {s['nonclair']['delta_mean']:+.2f}"
            cells.append(cell)
        out.append(f"| {r['label']} · {r['sampler']} | " + " | ".join(cells) + " |")
    return out


def ada_table(results: List[dict]) -> List[str]:
    """One row per model and sampler: the `all` split per target, the `held_out` split's mean Δ over targets."""
    split_all = [r for r in results if r["split"] == "all"]
    held = {(r["model"], r["sampler"]): r for r in results if r["split"] == "held_out"}
    targets = split_all[0]["targets"]
    out = ["| Ada − static, dB [95% CI], worst item; correction kept on | " + " | ".join(f"{t:g}x" for t in targets)
           + " | unseen classes | budget exact |", "|---|" + "---|" * (len(targets) + 2)]
    for r in split_all:
        runs = [x[key][f"{t:g}"]["budget_exact"].split("/") for x in (r, held.get((r["model"], r["sampler"])))
                if x for key in ("summary", "summary_on") for t in targets]
        exact = f"{sum(int(a) for a, _ in runs)}/{sum(int(b) for _, b in runs)}"
        cells = [f"{_ci(r['summary'][f'{t:g}'])}, {r['summary'][f'{t:g}']['delta_worst']:+.2f}; "
                 f"on {r['summary_on'][f'{t:g}']['delta_mean']:+.2f}" for t in targets]
        h = held.get((r["model"], r["sampler"]))
        unseen = (f"{sum(h['summary'][f'{t:g}']['delta_mean'] for t in targets) / len(targets):+.2f} "
                  f"({h['items']['eval']} items)") if h else "not run"
        margin = "off" if r["margin"] is None else f"margin {r['margin']:g}"
        out.append(f"| {r['label']} · {r['sampler']} ({r['items']['eval']} items, {margin}) | " + " | ".join(cells)
                   + f" | {unseen} | {exact} |")
    return out


def amortised_table(results: List[dict]) -> List[str]:
    """One row per model: per target, settings within 1 dB of their own calibration, above fewer steps, worst Δ."""
    by_model = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    targets = sorted({r["target"] for r in results})
    out = ["| amortised, no calibration run, 10 unseen settings: within 1 dB of own calibration · above fewer "
           "steps · worst Δ | " + " | ".join(f"{t:g}x" for t in targets) + " |", "|---|" + "---|" * len(targets)]
    for model, rows in by_model.items():
        cells = {r["target"]: f"{r['within_1db']}/{len(r['rows'])} · {r['above_fewer']}/{len(r['rows'])} · "
                              f"{min(row['delta'] for row in r['rows']):+.2f}" for r in rows}
        out.append(f"| {model} | " + " | ".join(cells.get(t, "not run") for t in targets) + " |")
    return out


def tables() -> str:
    lines = oracle_table(_load("oracle_*.json")) + [""] + ada_table(_load("ada_*.json")) + [""] \
        + amortised_table(_load("amortised_*x.json"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's tables are not current")
    args = parser.parse_args(argv)
    with open(args.readme) as f:
        readme = f.read()
    updated = replace_between(readme, START, END, tables(), args.readme)
    if args.check:
        return 0 if updated == readme else 1
    with open(args.readme, "w") as f:
        f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
