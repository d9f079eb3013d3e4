"""Sampling and counting helpers shared by the host tests (imported after ComfyUI is loaded)."""
import logging

import torch

from blockdance_core import parse_log_line

from benchmarks.comfy_env import PACK_MODULE  # re-exported for the tests
from benchmarks.measure import (BlockCounter, description_of, node, patch, record_of, recorded_runs,  # re-exported
                                sample_tiny as sample)


def sample_recorded(pack, model, tm, **kwargs):
    """Sample and return (output, the run's record)."""
    with recorded_runs(pack) as reports:
        out = sample(model, tm, **kwargs)
    return out, record_of(reports, model)


def spy_runs(model):
    """Every run object a patched model's spec makes (the spec is frozen: its factory is wrapped on the
    instance), so a test can look at the run's cache while it samples."""
    spec = description_of(model).spec
    runs, make = [], type(spec).new_run

    def new_run(timeline):
        runs.append(make(spec, timeline))
        return runs[-1]

    object.__setattr__(spec, "new_run", new_run)
    return runs


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []
        logging.getLogger("BlockDance").addHandler(self)
        logging.getLogger("BlockDance").setLevel(logging.INFO)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def runs(self):
        return [parse_log_line(line) for line in self.lines if line.startswith("BlockDance: family=")]

    def close(self):
        logging.getLogger("BlockDance").removeHandler(self)


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def assert_finite(t):
    assert torch.isfinite(t).all()
