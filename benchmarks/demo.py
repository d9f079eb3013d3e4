"""The README's first command: sample one model in ComfyUI with and without BlockDance.

Until the trained reference model exists, the model is a random-weight Wan 2.1 built on the
fly with a paper-like depth (24 blocks), so the speed numbers are real while the fidelity only
shows that the pipeline works: random weights lack the stable shallow features BlockDance uses.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from .comfy_env import load_pack
from .measure import interleaved_medians, psnr

CONFIGS = [("blockdance", 1), ("blockdance", 2), ("blockdance", 3), ("delta", 2), ("delta", 3)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (median)")
    parser.add_argument("--layers", type=int, default=24, help="blocks in the random-weight Wan model")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    pack = load_pack()
    from . import tiny_models
    import comfy.sample

    tm = tiny_models.build("wan21", seed=0, width=args.size, height=args.size,
                           config_overrides={"num_layers": args.layers, "dim": 256, "num_heads": 2, "ffn_dim": 1024})
    node = pack.NODE_CLASS_MAPPINGS["BlockDancePatch"]()
    models = {"uncached": tm.patcher}
    for mode, n in CONFIGS:
        models[f"{mode} N={n}"] = node.patch(tm.patcher, mode, 0.75, n, 0.4, 0.95)[0]

    image = comfy.sample.fix_empty_latent_channels(tm.patcher, tm.latent["samples"])
    noise = comfy.sample.prepare_noise(image, 1)
    outputs = {}

    def runner(name):
        def run():
            outputs[name] = comfy.sample.sample(models[name], noise, args.steps, 2.0, "euler", "simple",
                                                tm.positive, tm.negative, image, disable_pbar=True, seed=1)
        return run

    print(f"BlockDance demo: random-weight Wan 2.1, {args.layers} blocks, {args.size}px, {args.steps} euler steps, "
          f"cfg 2, depth 0.75, window 0.40-0.95, {args.repeats} interleaved rounds, "
          f"{torch.get_num_threads()} thread(s)")
    times = interleaved_medians({name: runner(name) for name in models}, args.repeats)
    base = outputs["uncached"]
    print(f"{'config':<16}{'seconds':>9}{'speedup':>9}{'ideal':>8}{'PSNR dB':>9}")
    for name, model in models.items():
        holder = model.model_options.get("transformer_options", {}).get("blockdance")
        ideal = holder.last_stats.ideal_speedup if holder is not None else 1.0
        print(f"{name:<16}{times[name]:>9.3f}{times['uncached'] / times[name]:>8.2f}x{ideal:>7.2f}x"
              f"{psnr(outputs[name], base):>9.1f}")
    print("PSNR is the output latent against the uncached one from the same noise (inf = bit-identical).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
