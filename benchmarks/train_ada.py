"""Train a BlockDance-Ada policy for a model file on a set of conditionings (the reference models by default).

`python -m benchmarks.train_ada [--model wan21] [--budgets 1.5 2 2.5 3] [--rho 0.0] [--iterations 40]`
trains on the calibration classes and seeds (benchmarks/protocol.py; the benchmark never evaluates
on them), prints progress and the cost, and writes the policy (safetensors with metadata) to
benchmarks/reference/policies/<model>_<sampler>.safetensors unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from blockdance_core.quality import QUALITIES

from . import protocol
from .comfy_env import load_pack
from .tiny_models import load_via_unet_loader

POLICY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "policies")


def policy_path(model_name: str, sampler: str) -> str:
    return os.path.join(POLICY_DIR, f"{model_name}_{sampler}.safetensors")


def training_items(pack, ref_model, contexts, sampler: str, seeds: int):
    """One item per calibration class and seed, batch 1."""
    Sampling, Item = pack.nodes.calibration.Sampling, pack.nodes.ada_training.Item
    null = ref_model.null_class
    items = []
    for c in protocol.CALIBRATION_CLASSES:
        for s in range(seeds):
            items.append(Item(Sampling([[contexts[c:c + 1], {}]], [[contexts[null:null + 1], {}]],
                                       {"samples": ref_model.empty_latent(1)}, protocol.CALIBRATION_SEED + 1000 * c + s,
                                       protocol.STEPS, protocol.CFG, sampler, protocol.SCHEDULER)))
    return items


def main(argv=None) -> int:
    from .reference import models
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--model-file", default=None, help="another model file (stock UNETLoader layout)")
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--budgets", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--rho", type=float, default=0.0, help="timeline position of the decision (0 = after step 0)")
    parser.add_argument("--lam", type=float, default=2.0)
    parser.add_argument("--iterations", type=int, default=20, help="REINFORCE iterations after the warm start")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=4, help="seeds per calibration class")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--quality", default="latent_psnr", choices=list(QUALITIES),
                        help="the reward's fidelity term (blockdance_core.quality)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-warm-start", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--state", default=None, help="train state for resuming (safetensors)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pack = load_pack()
    ref_model = models.get(args.model)
    model = load_via_unet_loader(args.model_file or ref_model.weights)
    contexts = ref_model.load_class_contexts()
    training, ada = pack.nodes.ada_training, pack.blockdance_core.ada
    items = training_items(pack, ref_model, contexts, args.sampler, args.seeds)
    started = time.perf_counter()
    cut, mode = training.choose_action(model, items, args.budgets)
    family = pack.nodes.families.detect(model.get_model_object("diffusion_model"))
    meta = ada.AdaMeta(family.name, ref_model.num_blocks, ref_model.latent_shape[0], contexts.shape[-1], args.rho, cut,
                       mode, args.lam, tuple(args.budgets))
    print(f"{ref_model.label}: {len(items)} items, action cut {cut}/{ref_model.num_blocks} {mode} "
          f"(chosen in {time.perf_counter() - started:.1f} s)", flush=True)

    def progress(i, n, entry):
        print(f"iteration {i}/{n}: reward {entry['reward']:.3f} PSNR {entry['psnr']:.1f} dB ideal {entry['speedup']:.2f}x",
              flush=True)

    net, log = training.train(model, items, meta, args.iterations, args.rollouts, args.lr, args.seed,
                              not args.no_warm_start, args.state, progress=progress,
                              quality=pack.blockdance_core.quality.get(args.quality))
    meta = pack.blockdance_core.ada.AdaMeta(**{**meta.__dict__, "training": {
        "sampler": args.sampler, "steps": protocol.STEPS, "cfg": protocol.CFG, "items": len(items),
        "iterations": log.iterations, "rollouts": log.rollouts, "rollouts_per_item": args.rollouts, "lr": args.lr,
        "seed": args.seed, "warm_start": not args.no_warm_start, "seconds": round(log.seconds, 1),
        "warm_start_seconds": round(log.warm_start_seconds, 1), "quality": args.quality}})
    out = args.out or policy_path(args.model, args.sampler)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    ada.save(out, net, meta)
    print(f"wrote {out}: {log.rollouts} rollouts, {log.seconds:.0f} s of training "
          f"(warm start {log.warm_start_seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
