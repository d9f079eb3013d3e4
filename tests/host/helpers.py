"""Sampling and counting helpers shared by the host tests (imported after ComfyUI is loaded)."""
import logging

import torch

from blockdance_core import parse_log_line

from benchmarks.comfy_env import PACK_MODULE  # re-exported for the tests
from benchmarks.measure import BlockCounter  # re-exported for the tests


def sample(model, tm, steps=10, cfg=2.0, sampler="euler", scheduler="simple", seed=1, latent=None,
           callback=None):
    import comfy.sample
    latent = tm.latent if latent is None else latent
    image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(image, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, tm.positive, tm.negative, image,
                               callback=callback, disable_pbar=True, seed=seed)


def patch(pack, model, mode="blockdance", depth=0.75, N=2, start_percent=0.4, end_percent=0.95, unique_id=None):
    node = pack.NODE_CLASS_MAPPINGS["BlockDancePatch"]()
    return node.patch(model, mode, depth, N, start_percent, end_percent, unique_id=unique_id)[0]


def holder_of(model):
    return model.model_options["transformer_options"]["blockdance"]


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
