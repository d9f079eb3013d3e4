"""BlockDance Ada Loader (a trained policy from the blockdance folder) and BlockDance Ada Train (train
one on the user's own model, in the graph)."""
from __future__ import annotations

import os

import comfy.samplers
import comfy.utils
from comfy_api.latest import io, ui

from ..blockdance_core import ada, ada_prior, ada_prior_train
from ..blockdance_core.config import BlockDanceConfigError
from ..blockdance_core import quality as qualities
from . import paths
from .ada_training import SEED_SPACE, Item, check_rho, choose_action, train
from .calibration import Sampling
from .families import detect
from .timeline import timeline_of
from .types import FileCombo, FileLoader, Policy, sampling_inputs, schema


class LoadedPolicy:
    """What flows through a BLOCKDANCE_POLICY socket: an Ada policy (the network, what it fits, and its
    name); docs/architecture.md says what else "policy" means here."""

    def __init__(self, net, meta: ada.AdaMeta, name: str):
        self.net, self.meta, self.name = net, meta, name

    def step_policy(self, target_speedup: float, schedule=None) -> ada.AdaPolicy:
        """The step policy that asks this network, aiming at `target_speedup` (it plans on its own: a
        connected schedule is not used)."""
        return ada.AdaPolicy(self.net, self.meta, target_speedup, self.name)

    def mode(self, step_policy) -> str:
        return self.meta.mode


class LoadedCorrection:
    """A closed-loop Ada policy (blockdance_core/ada_prior.py): a per-step correction that follows the
    connected schedule and leaves it only where it predicts a gain larger than its margin."""

    def __init__(self, correction, margin: float, info: dict, name: str):
        self.correction, self.margin, self.info, self.name = correction, margin, info, name

    def step_policy(self, target_speedup: float, schedule=None) -> ada_prior.PriorPolicy:
        """The schedule as prior, its own budget kept exactly (target_speedup is the schedule's)."""
        if schedule is None:
            raise BlockDanceConfigError(
                f"policy {self.name!r} is a closed-loop Ada policy: it corrects a schedule step by step, so "
                "connect one to BlockDance Patch's schedule input (BlockDance Calibrate, Load Schedule or "
                "Amortised Schedule)")
        return ada_prior.PriorPolicy(schedule, self.correction, margin=self.margin, label=self.name)

    def mode(self, step_policy) -> str:
        return step_policy.mode


NO_POLICY = "none yet: train one with BlockDance Ada Train"


class BlockDanceAdaLoader(FileLoader):
    """A BlockDance-Ada policy (models/blockdance/*.safetensors): connect it to BlockDance Patch. The paper's
    policy decides once, at step rho, which remaining steps reuse; a closed-loop policy corrects the
    connected schedule at every step, keeping its budget exactly."""
    node_id, display_name, output, output_name = "BlockDanceAdaLoader", "BlockDance Ada Loader", Policy, "policy"
    combo = FileCombo("policy_name", ".safetensors", "BlockDance-Ada policy", NO_POLICY, (
        "A policy file in models/blockdance/ (written by BlockDance Ada Train; refresh the page after "
        "training to see a new one)."))

    @classmethod
    def execute(cls, policy_name) -> io.NodeOutput:
        path, name = paths.full_path(policy_name), os.path.splitext(os.path.basename(policy_name))[0]
        if ada_prior_train.is_correction(_metadata(path)):
            return io.NodeOutput(LoadedCorrection(*ada_prior_train.load(path), name))
        net, meta = ada.load(path)
        return io.NodeOutput(LoadedPolicy(net, meta, name))


def _metadata(path: str):
    """A safetensors file's metadata (None when it cannot be read: ada.load then says why)."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt") as f:
            return f.metadata()
    except Exception:
        return None


class BlockDanceAdaTrain(io.ComfyNode):
    """Trains a BlockDance-Ada policy for this model with REINFORCE (reward = compute saved against the
    budget + lambda x fidelity to the uncached result), rolling out the real patched model. Each row of the
    latent batch is one training item (its own seed). Saves into models/blockdance."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema("BlockDanceAdaTrain", "BlockDance Ada Train", cls, is_output_node=True,
            inputs=[
                *sampling_inputs("policy", seed_control=False),
                io.String.Input("budgets", default="1.5, 2.0, 2.5", tooltip="Target speedups the policy serves."),
                io.Float.Input("rho", default=0.0, min=0.0, max=0.95, step=0.05, tooltip=(
                    "Where on the timeline the policy decides (0 = right after the first step).")),
                io.Int.Input("iterations", default=20, min=1, max=10000, tooltip=(
                    "Training iterations (each runs every row `rollouts` times).")),
                io.Int.Input("rollouts", default=4, min=2, max=64, tooltip="Sampled masks per item and iteration."),
                io.String.Input("filename_prefix", default="blockdance_ada", tooltip=(
                    "Saved as models/blockdance/<prefix>_00001.safetensors for BlockDance Ada Loader.")),
                io.Combo.Input("quality", options=list(qualities.QUALITIES), default="latent_psnr", tooltip=(
                    "The reward's fidelity term: PSNR (capped at 60 dB) or SSIM of the sampled latent against "
                    "the uncached one from the same noise.")),
            ],
            outputs=[Policy.Output(display_name="policy", tooltip="The trained policy: connect it to BlockDance Patch."),
                     io.String.Output(display_name="report", tooltip=(
                         "What was trained and how close it got; also shown on this node after a run."))],
        )

    @classmethod
    def validate_inputs(cls, filename_prefix=None, budgets=None) -> bool | str:   # no **kwargs: core keeps its range checks
        return (paths.prefix_problem(filename_prefix, ".safetensors", required=True) or _budgets_problem(budgets)
                or True)

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, budgets,
                rho, iterations, rollouts, filename_prefix, quality="latent_psnr") -> io.NodeOutput:
        paths.check_prefix(filename_prefix, ".safetensors", required=True)   # before any work, not after it
        _check_rho(model, rho, steps, sampler_name, scheduler)
        problem = _budgets_problem(budgets)
        if problem:
            raise ValueError(problem)
        targets = tuple(float(b) for b in budgets.replace(";", ",").split(",") if b.strip())
        reward_quality = qualities.get(quality)
        samples = latent_image["samples"]
        items = [Item(Sampling(positive, negative, {"samples": samples[i:i + 1]}, (seed + i) % SEED_SPACE, steps, cfg, sampler_name,
                               scheduler)) for i in range(samples.shape[0])]
        cut, mode = choose_action(model, items, targets)
        diffusion_model = model.get_model_object("diffusion_model")
        family = detect(diffusion_model)
        context = positive[0][0]
        meta = ada.AdaMeta(family.name, len(family.blocks(diffusion_model)), int(samples.shape[1]),
                           int(context.shape[-1]), rho, cut, mode, lam=ada.DEFAULT_LAM, budgets=targets)
        progress = comfy.utils.ProgressBar(iterations)
        net, log = train(model, items, meta, iterations, rollouts, seed=seed,
                         progress=lambda i, n, entry: progress.update_absolute(i, n), quality=reward_quality)
        meta = ada.AdaMeta(**{**meta.__dict__, "training": {
            "sampler": sampler_name, "scheduler": scheduler, "steps": steps, "cfg": cfg, "items": len(items),
            "iterations": log.iterations, "rollouts": log.rollouts, "seconds": round(log.seconds, 1),
            "quality": quality}})
        path = paths.save_path(filename_prefix, ".safetensors")
        ada.save(path, net, meta)
        last = log.history[-1] if log.history else {}
        report = (f"BlockDance-Ada: {len(items)} items, {log.rollouts} rollouts in {log.seconds:.0f} s; action: "
                  f"skip {cut}/{meta.num_blocks} blocks ({mode}); last iteration: PSNR {last.get('psnr', 0):.1f} dB, "
                  f"ideal {last.get('speedup', 1):.2f}x; saved {path}")
        name = os.path.splitext(os.path.basename(path))[0]
        return io.NodeOutput(LoadedPolicy(net, meta, name), report, ui=ui.PreviewText(report))


def _budgets_problem(budgets) -> str:
    """Why a budgets text is not a list of target speedups >= 1 ("" when it is, or when linked)."""
    if budgets is None:
        return ""
    try:
        targets = [float(b) for b in str(budgets).replace(";", ",").split(",") if b.strip()]
    except ValueError:
        return f"budgets={budgets!r}: give target speedups separated by commas, e.g. '1.5, 2.0'"
    if not targets or not all(1.0 <= t < float("inf") for t in targets):
        return f"budgets={budgets!r}: every target speedup must be >= 1.0"
    return ""


def _check_rho(model, rho: float, steps: int, sampler_name: str, scheduler: str) -> None:
    """Where the sampler's steps fall on the timeline, known before anything runs."""
    import comfy.samplers
    sigmas = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                     denoise=1.0, model_options=model.model_options).sigmas
    timeline = timeline_of(sigmas, model.get_model_object("model_sampling"))
    check_rho(rho, list(timeline.positions), f"with {steps} steps of {sampler_name} / {scheduler}")
