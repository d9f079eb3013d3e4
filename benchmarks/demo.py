"""The README's first command: the reference model sampled in ComfyUI with and without BlockDance.

Runs the quick benchmark (benchmarks.run --quick, 3 timing rounds): the trained reference DiT
(Wan 2.1, 24 blocks, MNIST) loaded by ComfyUI's stock UNETLoader, uncached versus BlockDance and
Delta-Cache at N=1..3 with the paper's window, the shipped calibrated schedule for 2x, beside
EasyCache, LazyCache and fewer steps, then BlockDance-Ada and the gate sample by sample; it prints
measured and ideal speedups and the fidelity to the uncached output, and writes a sample grid and a
Pareto plot.
"""
from __future__ import annotations

import sys

from . import run


def main(argv=None) -> int:
    return run.main(["--quick", "--repeats", "3", "--json", "out/demo/results.json", *(argv or [])])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
