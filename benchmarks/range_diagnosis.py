"""Why the calibrator's error model over-rates rear ranges on HunyuanImage: the text tokens.

`python -m benchmarks.range_diagnosis [--model NAME] [--sampler euler] [--targets 1.5 2 3]` probes the
calibration batch once (as BlockDance Calibrate does, `ranges = front and rear`) and runs the exact search
twice: on the measurement as Calibrate keeps it (every value of the state, text tokens included) and on
the image tokens only (what the model's final layer reads). It prints, per target, the rear groups each
search picks and its predicted error beside the front-only plan's. The reference models' states hold
every value (no subsampling), image tokens first in both streams (hunyuan_video concatenates (img, txt)).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from . import protocol


def image_only(measurement, image_tokens: int, tokens: int):
    """The measurement restricted to the first `image_tokens` of `tokens` tokens of every state."""
    features, bases = {}, {}
    for c in measurement.cuts:
        f, b = measurement.features[c], measurement.bases[c]
        if f.shape[-1] % tokens:
            raise SystemExit(f"cut {c}: {f.shape[-1]} values are not {tokens} whole tokens (a subsampled probe)")
        keep = f.shape[-1] // tokens * image_tokens
        features[c], bases[c] = f[..., :keep], b[..., :keep]
    return dataclasses.replace(measurement, features=features, bases=bases)


def main(argv=None) -> int:
    from .calibrate_reference import calibration_inputs
    from .reference import models
    from .run import load_reference
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hunyuan_image21", choices=sorted(models.MODELS))
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--targets", type=float, nargs="*", default=[1.5, 2.0, 3.0])
    args = parser.parse_args(argv)
    ref = models.get(args.model)
    pack, model, contexts = load_reference(ref)
    core, calibration = pack.blockdance_core, pack.nodes.calibration
    positive, negative, latent = calibration_inputs(ref, contexts)
    sampling = calibration.Sampling(positive, negative, latent, protocol.CALIBRATION_SEED, protocol.STEPS,
                                    protocol.CFG, args.sampler, protocol.SCHEDULER)
    cuts, options = calibration.search_options(model, "auto", "front and rear")
    family = pack.nodes.families.detect(model.get_model_object("diffusion_model"))
    if not any(stage.from_block0 for stage in family.stages):
        print(f"{ref.label}: its blocks carry image tokens only (text enters by cross-attention): nothing to separate")
        return 0
    _, measured = calibration.measure(model, sampling, cuts)
    joint = measured.features[cuts[-1]].shape[-1] // measured.width
    image_tokens = joint - ref.context_tokens
    print(f"{ref.label}, {args.sampler}: states of {joint} tokens, {image_tokens} of them image tokens")
    front = [o for o in options if len(o) == 2]
    for label, m in (("all values (Calibrate)", measured), ("image tokens only", image_only(measured, image_tokens, joint))):
        for t in args.targets:
            plan, front_plan = core.search.search(m, t, options), core.search.search(m, t, front)
            rear = ", ".join(f"blocks {g.start}-{g.cut - 1} x{len(g.reuse_steps)}" for g in plan.groups if g.start)
            print(f"{label:<24}{t:>5g}x  front and rear {plan.predicted_error:.4f}  front only "
                  f"{front_plan.predicted_error:.4f}  rear groups: {rear or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
