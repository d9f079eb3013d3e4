"""Training the closed-loop Ada correction by imitating the search's optimum on the states it visits.

Why: a probe run of an item measures the reuse error of every (cache step, reuse step) pair, so the
exact optimum of the rest of the run is known from ANY state (step, last computed step, reuse steps
left): a dynamic programme over the same errors the calibration search minimises. Labels then cost
one probe per item instead of rollouts scored by sampling; DAgger (roll out the current correction,
label the states it reached, refit) keeps the labels on the states the policy really meets.

The correction stays a residual on the prior (ada_prior.PriorPolicy): it is fitted so that
prior logit (+-margin) + correction has the expert's sign, each state weighted by what the wrong
choice costs, with an L2 pull towards zero; the margin, the policy's threshold for leaving the prior,
is fitted afterwards on measured fidelity of validation items (the caller's job: it needs sampling).
Pure torch and numpy; sampling is the caller's `rollout`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import untrusted as u
from .ada_prior import SIGNALS, Correction, PriorError, Visit
from .search import option_errors

FORMAT = "blockdance-ada-prior"
MAX_HIDDEN = 256
MAX_META_CHARS = 20000


def expert_errors(measurement, start: int, cut: int, mode: str) -> np.ndarray:
    """[steps, steps] the search's cost of reusing at k from step j for this range."""
    return option_errors(measurement, (cut, mode, start))


def continuation_values(errors: np.ndarray) -> np.ndarray:
    """V[m, src, r]: least summed error from step m on, with `src` the last computed step that kept the
    range (index S: none) and exactly r reuse steps still to spend (inf where impossible). Mirrors
    PriorRun: a computed step keeps the range while budget remains and a step follows it."""
    S = errors.shape[0]
    none = S
    V = np.full((S + 1, S + 1, S + 1), np.inf)
    V[S, :, 0] = 0.0
    finite = np.where(np.isfinite(errors), errors, np.inf)
    for m in range(S - 1, -1, -1):
        nxt = V[m + 1]
        keep = m if m + 1 < S else none
        compute = np.concatenate([nxt[none, :1], nxt[keep, 1:]])    # r = 0 keeps nothing
        reuse = np.full((S + 1, S + 1), np.inf)
        reuse[:S, 1:] = finite[:, m][:, None] + nxt[:S, :-1]
        V[m] = np.minimum(compute[None, :], reuse)
    return V


def advantage(errors: np.ndarray, V: np.ndarray, visit: Visit) -> float:
    """Cost of computing minus cost of reusing at the visited state (> 0: reusing is better)."""
    S, k, j, r = errors.shape[0], visit.step, visit.source, visit.remaining
    keep = k if (r > 0 and k + 1 < S) else S
    q_compute = V[k + 1, keep, r]
    q_reuse = errors[j, k] + V[k + 1, j, r - 1] if r > 0 else math.inf
    if math.isinf(q_compute) and math.isinf(q_reuse):
        return 0.0
    return float(np.clip(q_compute - q_reuse, -1e6, 1e6))


@dataclass
class Labelled:
    """The DAgger set: signals, the prior's choice, and the expert's advantage of reusing."""
    signals: List[torch.Tensor] = field(default_factory=list)
    prior: List[float] = field(default_factory=list)
    advantage: List[float] = field(default_factory=list)

    def add(self, visits: Sequence[Visit], errors: np.ndarray, scale: float) -> None:
        V = continuation_values(errors)
        for v in visits:
            self.signals.append(v.signals)
            self.prior.append(1.0 if v.prior_reuse else -1.0)
            self.advantage.append(advantage(errors, V, v) / max(scale, 1e-12))

    def __len__(self) -> int:
        return len(self.signals)

    def disagreement(self) -> float:
        """Share of labelled states where the expert and the prior differ."""
        if not self.signals:
            return 0.0
        a, p = np.array(self.advantage), np.array(self.prior)
        return float(np.mean((a > 0) != (p > 0)))


def fit(correction: Correction, data: Labelled, margin: float, epochs: int = 300, lr: float = 1e-2,
        l2: float = 1e-2, weight_cap: float = 10.0, seed: int = 0) -> float:
    """Fit the correction (in place) so that prior*margin + correction has the expert's sign, weighted
    by |advantage| (capped); returns the final weighted loss. Deterministic for a seed."""
    if not len(data):
        return 0.0
    torch.manual_seed(seed)
    x = torch.stack(data.signals).float()
    prior = torch.tensor(data.prior, dtype=torch.float32)
    adv = torch.tensor(data.advantage, dtype=torch.float32)
    target = torch.where(adv > 0, 1.0, -1.0)
    weight = adv.abs().clamp_max(weight_cap)
    weight = weight / weight.mean().clamp_min(1e-12)
    opt = torch.optim.Adam(correction.parameters(), lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        opt.zero_grad()
        c = correction(x)
        loss = (weight * torch.nn.functional.softplus(-target * (prior * margin + c))).mean() + l2 * (c ** 2).mean()
        loss.backward()
        opt.step()
    return float(loss.detach())


def dagger(items: Sequence, rollout: Callable[[Correction, object], Sequence[Visit]],
           errors_of: Callable[[object], np.ndarray], scale_of: Callable[[object], float],
           margin: float = 1.0, iterations: int = 3, hidden: int = 16, seed: int = 0,
           log: Callable[[str], None] = lambda s: None) -> Tuple[Correction, Dict[str, object]]:
    """Imitation of the search optimum: iteration 0 rolls out the prior itself (zero correction), each
    later one the correction fitted on every state labelled so far."""
    torch.manual_seed(seed)
    correction = Correction(hidden)
    data = Labelled()
    history = []
    for it in range(iterations):
        for item in items:
            data.add(rollout(correction, item), errors_of(item), scale_of(item))
        loss = fit(correction, data, margin, seed=seed + it)
        history.append({"iteration": it, "states": len(data), "expert_differs": round(data.disagreement(), 4),
                        "loss": round(loss, 5)})
        log(f"DAgger iteration {it}: {len(data)} states, the expert leaves the prior on "
            f"{data.disagreement():.1%}, loss {loss:.4f}")
    return correction, {"iterations": history}


def save(path: str, correction: Correction, margin: float, info: dict) -> None:
    """safetensors: the correction's tensors; metadata: format, signals, hidden width, margin (null: inf,
    the validation switched the correction off), info."""
    from safetensors.torch import save_file
    hidden = correction.net[0].out_features
    meta = {"signals": list(SIGNALS), "hidden": hidden, "margin": None if math.isinf(margin) else margin, "info": info}
    save_file({k: v.detach().contiguous() for k, v in correction.state_dict().items()}, path,
              metadata={"format": FORMAT, "meta": json.dumps(meta)})


def is_correction(metadata: Optional[dict]) -> bool:
    return bool(metadata) and metadata.get("format") == FORMAT


def load(path: str) -> Tuple[Correction, float, dict]:
    """Only safetensors; metadata and every tensor's name and shape checked before the net is built."""
    try:
        return _load(path)
    except PriorError:
        raise
    except Exception as err:   # not a safetensors file, truncated, ...
        raise PriorError(f"{path}: cannot be read as a closed-loop Ada correction ({type(err).__name__}: {err})") from None


def _load(path: str) -> Tuple[Correction, float, dict]:
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        if not is_correction(metadata) or "meta" not in metadata:
            raise PriorError(f"{path}: not a closed-loop BlockDance-Ada correction (no '{FORMAT}' metadata)")
        try:
            if len(metadata["meta"]) > MAX_META_CHARS:
                raise u.FieldError(f"metadata of {len(metadata['meta'])} characters; at most {MAX_META_CHARS}")
            meta = u.mapping(u.parse_json(metadata["meta"], "metadata"), "metadata")
            signals = [u.text(s, "signals[]") for s in u.sequence(meta.get("signals"), "signals", 1, 64)]
            hidden = u.integer(meta.get("hidden"), "hidden", 1, MAX_HIDDEN)
            margin = math.inf if meta.get("margin") is None else u.number(meta["margin"], "margin", 0.0, 1e6)
            info = u.mapping(meta.get("info", {}), "info")
        except u.FieldError as err:
            raise PriorError(f"{path}: correction metadata: {err}") from None
        if signals != list(SIGNALS):
            raise PriorError(f"{path}: made for signals {signals}; this version reads {list(SIGNALS)}")
        correction = Correction(hidden)
        expected = {k: tuple(v.shape) for k, v in correction.state_dict().items()}
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        if found != expected:
            raise PriorError(f"{path}: tensors {found} do not match a correction of hidden width {hidden} {expected}")
        correction.load_state_dict({k: f.get_tensor(k).float() for k in f.keys()})
    for p in correction.parameters():
        if not torch.isfinite(p).all():
            raise PriorError(f"{path}: the correction holds non-finite weights")
    return correction.eval(), margin, info
