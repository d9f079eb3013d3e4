"""Training a BlockDance-Ada policy on the user's own model, with rollouts of the real patched model.

1. The uncached output of every training item (a conditioning and a seed) is the fidelity reference.
2. The reuse action (cut, mode) is the one calibration uses most at the training budgets (one probed
   run of the items, blockdance_core.search).
3. Optional warm start: per item and budget, the searched static plan of that item alone is the
   target mask; the network imitates it (binary cross-entropy on its per-stretch probabilities).
4. REINFORCE with a baseline: per item, K rollouts sample masks from the policy; reward = compute
   term + lam * quality. The compute term is 1 when the saved share of block executions equals the
   budget's (1 - 1/target) and falls off linearly either way, so the policy reaches the budget and
   spends the rest on fidelity; quality is pluggable (blockdance_core.quality), by default
   min(PSNR of the latent against the reference, 60 dB) / 60.
   gradient = mean over rollouts of (reward - the item's mean reward) * grad log pi(mask).

Reproducible (seeded: items, budget draws and Bernoulli masks), resumable from a safetensors train
state, with a progress callback and its cost (wall time, rollouts) in the returned log.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..blockdance_core import StepKind, ada
from ..blockdance_core.budget import saved_share
from ..blockdance_core.probe import ProbePolicy
from ..blockdance_core.quality import MAX_PSNR, latent_psnr, psnr_quality
from ..blockdance_core.search import most_used_option, search
from ..blockdance_core.train_state import adam_tensors, load_adam
from .calibration import Sampling, measure, search_options
from .patcher import apply_blockdance
from .telemetry import receiving


SEED_SPACE = 2**64   # torch's seeds, and the seed widget's range


def derived_seed(seed: int, offset: int) -> int:
    """A seed per training iteration from the user's seed, inside torch's range for any widget value."""
    return (seed * 100_003 + offset) % SEED_SPACE


def check_rho(rho: float, positions, what: str) -> None:
    """Refuse, before any run, a rho that leaves the policy no step to decide at."""
    if ada.rho_step(positions, rho) >= len(positions):
        last = positions[-1] if positions else 0.0
        raise ValueError(f"rho={rho:g} leaves no step to decide at: {what}, the last step starts at "
                         f"{last:.3f} on the timeline. Lower rho to at most {last:.2f} or use more steps.")


@dataclass
class Item:
    sampling: Sampling          # one conditioning and seed, batch 1
    reference: Optional[torch.Tensor] = None
    features: Optional[tuple] = None   # the network's inputs at rho (budget filled in per use)


@dataclass
class TrainLog:
    iterations: int = 0
    rollouts: int = 0
    seconds: float = 0.0
    warm_start_seconds: float = 0.0
    history: List[dict] = field(default_factory=list)   # per iteration: mean reward, PSNR, speedup


def choose_action(model, items: Sequence[Item], budgets: Sequence[float], mode: str = "auto") -> Tuple[int, str]:
    """The (cut, mode) calibration uses most (by blocks skipped) over the budgets, measured on the items."""
    cuts, options = search_options(model, mode)
    patched, receiver = receiving(apply_blockdance(model, ProbePolicy(cuts), "probe"))
    for item in items:
        item.reference = item.sampling.run(patched)
    measurements = [report.record.result.measurement() for report in receiver.reports]
    return most_used_option(measurements, budgets, options) or (cuts[-1], "blockdance")


def _targets(model, item: Item, meta: ada.AdaMeta) -> dict:
    """Per budget, the item's own searched plan as per-bin 'computes' targets (one probed run)."""
    _, measurement = measure(model, item.sampling, (meta.cut,))
    positions = measurement.timeline.positions
    earliest = ada.rho_step(positions, meta.rho)
    out = {}
    for budget in meta.budgets:
        plan = search(measurement, budget, [(meta.cut, meta.mode)], earliest=earliest)
        computes = torch.tensor([a.kind is not StepKind.REUSE for a in plan.actions()], dtype=torch.float32)
        bins = torch.zeros(ada.BINS)
        for b in range(ada.BINS):   # a bin takes the steps whose position falls in it, else the nearest step
            inside = [k for k, p in enumerate(positions) if b / ada.BINS <= p < (b + 1) / ada.BINS]
            nearest = min(range(len(positions)), key=lambda k: abs(positions[k] - (b + 0.5) / ada.BINS))
            bins[b] = computes[inside].mean() if inside else computes[nearest]
        out[budget] = bins
    return out


def _rollout(model, item: Item, net, meta, budget: float, sample: bool, label: str = "train",
             masks: Optional[torch.Generator] = None):
    """One run of the patched model under the network; (output, record, the policy's run). A sampling
    rollout draws its mask seed from `masks` and runs the network in train mode (dropout)."""
    seed = ada.draw_seed(masks) if sample and masks is not None else None
    policy = ada.AdaPolicy(net, meta, budget, label, sample=sample, mask_seed=seed)
    net.train(sample)   # the trainer's own network: dropout only while sampling masks
    patched, receiver = receiving(apply_blockdance(model, policy, "ada"))
    out = item.sampling.run(patched)
    record = receiver.last.record
    return out, record, record.result


def train(model, items: Sequence[Item], meta: ada.AdaMeta, iterations: int, rollouts: int = 4, lr: float = 3e-3,
          seed: int = 0, warm_start: bool = True, state_path: Optional[str] = None, save_every: int = 10,
          progress: Optional[Callable[[int, int, dict], None]] = None,
          quality: Callable[[torch.Tensor, torch.Tensor], float] = psnr_quality) -> Tuple[ada.AdaNet, TrainLog]:
    torch.manual_seed(seed)
    log, start = TrainLog(), 0
    with ada.autograd():   # the network and its optimiser live outside ComfyUI's inference mode
        net = ada.AdaNet(meta.latent_channels, meta.cond_width, meta.hidden)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        if state_path and os.path.exists(state_path):
            start, log = _load_state(state_path, net, opt)
    started = time.perf_counter() - log.seconds
    for item in items:   # the reference and the network's inputs at rho (mask-independent)
        if item.reference is None:
            item.reference = item.sampling.run(model)
        if item.features is None:
            _, _, run = _rollout(model, item, net, meta, meta.budgets[0], sample=True,
                                 masks=torch.Generator().manual_seed(seed))
            item.features = run.features
    if warm_start and start == 0 and not log.warm_start_seconds:
        clock = time.perf_counter()
        _imitate(model, net, items, meta)
        log.warm_start_seconds = time.perf_counter() - clock
    rng = torch.Generator().manual_seed(seed)   # the budget each item trains for, one draw per item and iteration
    for _ in range(start * len(items)):           # a resumed run continues the draws where it stopped
        torch.randint(len(meta.budgets), (1,), generator=rng)
    for it in range(start, iterations):
        masks = torch.Generator().manual_seed(derived_seed(seed, it))   # this iteration's masks and dropout
        losses, stats = [], []
        for i, item in enumerate(items):
            budget = meta.budgets[int(torch.randint(len(meta.budgets), (1,), generator=rng))]
            rewards, log_probs = [], []
            for _ in range(rollouts):
                out, record, run = _rollout(model, item, net, meta, budget, sample=True, masks=masks)
                psnr = latent_psnr(out, item.reference)
                saved = saved_share(record.ideal_speedup)
                wanted = saved_share(budget)
                reward = 1 - abs(saved - wanted) / wanted + meta.lam * quality(out, item.reference)
                rewards.append(reward)
                log_probs.append(run.log_prob)
                stats.append((reward, min(psnr, MAX_PSNR), record.ideal_speedup))
                log.rollouts += 1
            with ada.autograd():
                r = torch.tensor(rewards)
                advantage = r - r.mean()
                losses.append(-(advantage * torch.stack(log_probs)).mean())
        with ada.autograd():
            opt.zero_grad()
            torch.stack(losses).mean().backward()
            opt.step()
        entry = {"iteration": it + 1, "reward": sum(s[0] for s in stats) / len(stats),
                 "psnr": sum(s[1] for s in stats) / len(stats), "speedup": sum(s[2] for s in stats) / len(stats)}
        log.history.append(entry)
        log.iterations, log.seconds = it + 1, time.perf_counter() - started
        if progress is not None:
            progress(it + 1, iterations, entry)
        if state_path and ((it + 1) % save_every == 0 or it + 1 == iterations):
            _save_state(state_path, net, opt, log)
    log.seconds = time.perf_counter() - started
    return net.eval(), log


def _imitate(model, net, items: Sequence[Item], meta: ada.AdaMeta, epochs: int = 400, shrink: float = 0.05) -> None:
    """Distil the items' own searched plans: binary cross-entropy on the per-stretch probabilities,
    plus a penalty on the per-instance correction so it only departs from the shared plan where that
    pays on every item."""
    plans = [(item.features, budget, target) for item in items for budget, target in _targets(model, item, meta).items()]
    with ada.autograd():   # copies: tensors made under inference mode cannot be saved for backward
        data = [(tuple(f.clone() for f in features), budget, target.clone()) for features, budget, target in plans]
        _fit_plans(net, data, epochs, shrink)


def _fit_plans(net, data, epochs: int, shrink: float) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    net.train()
    for _ in range(epochs):
        loss = 0.0
        for (latent, cond, scalars), budget, target in data:
            s = scalars.clone()
            s[:, 3] = ada.budget_feature(budget)
            plan, correction = net.parts(latent, cond, s)
            logits = (plan + correction).mean(0)
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            loss = loss + shrink * correction.pow(2).mean()
        opt.zero_grad()
        (loss / len(data)).backward()
        opt.step()
    net.eval()


def _save_state(path: str, net, opt, log: TrainLog) -> None:
    import json
    from safetensors.torch import save_file
    tensors = {f"net.{k}": v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    tensors.update(adam_tensors(net.parameters(), opt))
    meta = {"log": json.dumps({"iterations": log.iterations, "rollouts": log.rollouts, "seconds": log.seconds,
                               "warm_start_seconds": log.warm_start_seconds, "history": log.history})}
    save_file(tensors, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)


def _load_state(path: str, net, opt) -> Tuple[int, TrainLog]:
    import json
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        data = json.loads(f.metadata()["log"])
        net.load_state_dict({k[4:]: f.get_tensor(k) for k in f.keys() if k.startswith("net.")})
        load_adam(f, net.parameters(), opt)
    log = TrainLog(data["iterations"], data["rollouts"], data["seconds"], data["warm_start_seconds"], data["history"])
    return log.iterations, log
