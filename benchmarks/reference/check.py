"""Check a shipped reference model the way the benchmark meets it: through stock UNETLoader, then
sampled by ComfyUI and judged by the digit classifier.

`python -m benchmarks.reference.check [--model NAME] [--weights PATH] [--seeds 7 8 9]`
(repository root, COMFYUI_PATH set) prints the detected config class and depth, and the class
accuracy of 2 samples per class per seed (30 euler steps, scheduler "simple", CFG 2; the
benchmark's settings). A model that detection rebuilds differently, or that does not draw
recognisable digits, would make every benchmark figure about it meaningless.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import torch

from ..tiny_models import load_via_unet_loader
from . import classifier as digit_classifier
from . import models
from .model import load_class_contexts


class DetectionMismatch(RuntimeError):
    pass


def _same(a, b) -> bool:
    return json.dumps(a) == json.dumps(b)  # tuples and lists alike


def load_checked(spec: models.ReferenceModel, weights: str | None = None):
    """The ModelPatcher stock UNETLoader gives for the file; raises DetectionMismatch unless
    detection chose spec.config_class with every value of spec.unet_config (depths included)."""
    patcher = load_via_unet_loader(weights or spec.weights)
    config = patcher.model.model_config
    if type(config).__name__ != spec.config_class:
        raise DetectionMismatch(f"detected {type(config).__name__}, trained {spec.config_class}")
    wrong = {k: (v, config.unet_config.get(k)) for k, v in spec.unet_config.items()
             if not _same(v, config.unet_config.get(k))}
    if wrong:
        raise DetectionMismatch(f"detected config differs (trained, detected): {wrong}")
    blocks = len(spec.blocks(patcher.model.diffusion_model))
    if blocks != spec.num_blocks:
        raise DetectionMismatch(f"{blocks} blocks loaded, {spec.num_blocks} trained")
    return patcher


def sample_digits(spec: models.ReferenceModel, patcher, contexts: torch.Tensor, labels: torch.Tensor,
                  seed: int, steps: int = 30, cfg: float = 2.0, sampler: str = "euler") -> torch.Tensor:
    """[N, 1, 28, 28] digits of classes `labels`, sampled by comfy.sample.sample from seed's noise."""
    import comfy.sample
    latent = comfy.sample.fix_empty_latent_channels(patcher, spec.empty_latent(len(labels)))
    noise = comfy.sample.prepare_noise(latent, seed)
    positive = [[contexts[labels], {}]]
    negative = [[contexts[spec.null_class:spec.null_class + 1], {}]]
    out = comfy.sample.sample(patcher, noise, steps, cfg, sampler, "simple", positive, negative, latent,
                              disable_pbar=True, seed=seed)
    return spec.from_latent(out)


def class_accuracy(spec: models.ReferenceModel, weights: str | None = None, seeds: Sequence[int] = (7,),
                   per_class: int = 2, steps: int = 30, cfg: float = 2.0, sampler: str = "euler") -> dict:
    """Load (checked) and sample `per_class` digits of every class per seed; the classifier's
    accuracy against the intended classes, overall and per seed."""
    patcher = load_checked(spec, weights)
    contexts = spec.load_class_contexts() if weights is None else _contexts_beside(spec, weights)
    judge = digit_classifier.load()
    labels = torch.arange(10).repeat_interleave(per_class)
    per_seed = {}
    with torch.no_grad():
        for seed in seeds:
            images = sample_digits(spec, patcher, contexts, labels, seed, steps, cfg, sampler)
            per_seed[seed] = float((judge(images).argmax(1) == labels).float().mean())
    return {"accuracy": sum(per_seed.values()) / len(per_seed), "per_seed": per_seed,
            "config_class": type(patcher.model.model_config).__name__, "blocks": spec.num_blocks,
            "dtype": str(patcher.model.get_dtype()), "samples": len(labels) * len(seeds)}


def _contexts_beside(spec: models.ReferenceModel, weights: str) -> torch.Tensor:
    """A trial file's class table sits beside it (train.py --out); the shipped one otherwise."""
    trial = os.path.splitext(weights)[0] + "_class_contexts.safetensors"
    return load_class_contexts(trial) if os.path.isfile(trial) else spec.load_class_contexts()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    p.add_argument("--weights", default=None, help="default: the shipped file")
    p.add_argument("--seeds", type=int, nargs="+", default=[7])
    p.add_argument("--per-class", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--cfg", type=float, default=2.0)
    p.add_argument("--sampler", default="euler")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    spec = models.get(args.model)
    r = class_accuracy(spec, args.weights, args.seeds, args.per_class, args.steps, args.cfg, args.sampler)
    print(f"{spec.label}: UNETLoader detected {r['config_class']} with the trained config "
          f"({r['blocks']} blocks, {r['dtype']}); class accuracy {r['accuracy']:.3f} on {r['samples']} samples "
          f"({args.steps} {args.sampler} steps, cfg {args.cfg:g}; per seed "
          + ", ".join(f"{s}: {a:.2f}" for s, a in r["per_seed"].items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
