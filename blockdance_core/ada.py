"""BlockDance-Ada: a small decision network that plans the rest of sampling once, at step rho, from
the latent and the conditioning.

Inputs (family-agnostic): per-channel mean and std of the noisy latent at step rho, its channel mean
pooled to 4x4, the token-mean of the conditioning through one linear layer, and four scalars (rho's
position on the timeline, its sigma, the step count, the compute budget as a target speedup), so
one policy serves several target speeds. Output: for each of BINS stretches of the timeline, the
probability that a step there computes (the paper's cache mask m); a run reads it at each remaining
step's position, so the policy serves any step count. Bernoulli samples in training. At test time
`decode="budget"` (the default) reuses the steps the policy is least sure need computing, as many as
the target speedup needs, so every sample runs at the budget it was asked for; `decode="threshold"`
is the paper's greedy rule (m > 0.5 computes), whose speed follows the network (on the reference
model it ran at 1.49x when asked for 2x). A batch is decided as a whole (policy.py): the samples'
probabilities are averaged.

Steps before rho compute (the last of them keeps features, so step rho may already reuse). Reuse
steps skip blocks 0..cut-1 in the policy's mode (both chosen when the policy is made, from
calibration). Checkpoints are safetensors with the metadata that says what they fit.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import untrusted
from .actions import FULL, MODES, StepAction, cache_step, reuse_step
from .policy import MAX_COND_WIDTH, MAX_LATENT_CHANNELS, ModelFingerprint, Observation, PolicyRun, StepPolicy
from .budget import blocks_to_save
from .timeline import POSITION_EPS, Timeline, bin_of

BINS = 32
DEFAULT_LAM = 2.0            # reward weight of quality against saved compute (BlockDance Ada Train's)
FORMAT = "blockdance-ada"
MAX_HIDDEN = 4096            # the shipped policies use 64
MAX_BLOCKS = 10000
MAX_META_CHARS = 2**20


class AdaError(untrusted.FieldError):
    """A policy checkpoint that cannot be used here; the message names both sides."""


@dataclass(frozen=True)
class AdaMeta:
    family: str
    num_blocks: int
    latent_channels: int
    cond_width: int
    rho: float                     # position on the timeline where the plan is made (0 = after step 0)
    cut: int                       # reuse steps skip blocks 0..cut-1
    mode: str
    lam: float                     # reward = saved compute (up to the target) + lam * quality
    budgets: Tuple[float, ...]     # target speedups it was trained for
    hidden: int = 64
    training: dict = field(default_factory=dict, compare=False)

    @property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(self.family, self.num_blocks, None, self.latent_channels, self.cond_width)

    def to_metadata(self) -> dict:
        data = asdict(self)
        data["budgets"] = list(self.budgets)
        return {"format": FORMAT, "meta": json.dumps(data)}

    @classmethod
    def from_metadata(cls, metadata: Optional[dict], source: str) -> "AdaMeta":
        """The metadata checked field by field before anything is built from it."""
        if not metadata or metadata.get("format") != FORMAT or "meta" not in metadata:
            raise AdaError(f"{source}: not a BlockDance-Ada policy (no '{FORMAT}' metadata)")
        u = untrusted
        try:
            if len(metadata["meta"]) > MAX_META_CHARS:
                raise u.FieldError(f"metadata of {len(metadata['meta'])} characters; at most {MAX_META_CHARS}")
            data = u.mapping(u.parse_json(metadata["meta"], "metadata"), "metadata")
            num_blocks = u.integer(data.get("num_blocks"), "num_blocks", 1, MAX_BLOCKS)
            budgets = u.sequence(data.get("budgets"), "budgets", 1, 64)
            unknown = set(data) - {f for f in cls.__dataclass_fields__}
            if unknown:
                raise u.FieldError(f"unknown fields {sorted(unknown)}")
            return cls(
                family=u.text(data.get("family"), "family", 64), num_blocks=num_blocks,
                latent_channels=u.integer(data.get("latent_channels"), "latent_channels", 1, MAX_LATENT_CHANNELS),
                cond_width=u.integer(data.get("cond_width"), "cond_width", 1, MAX_COND_WIDTH),
                rho=u.number(data.get("rho"), "rho", 0.0, 1.0, high_open=True),
                cut=u.integer(data.get("cut"), "cut", 1, num_blocks),
                mode=u.text(data.get("mode"), "mode", 16, MODES),
                lam=u.number(data.get("lam"), "lam", 0.0, 1e6),
                budgets=tuple(u.number(b, f"budgets[{i}]", 1.0, 100.0) for i, b in enumerate(budgets)),
                hidden=u.integer(data.get("hidden", 64), "hidden", 1, MAX_HIDDEN),
                training=u.flat_record(data.get("training", {}), "training"))
        except u.FieldError as err:
            raise AdaError(f"{source}: policy metadata: {err}") from None

    def weight_shapes(self) -> dict:
        """The shape of every tensor the network this metadata describes holds (nothing allocated)."""
        h, width = self.hidden, 2 * self.latent_channels + 16 + 16
        return {"projection": (self.cond_width, 16),
                "plan.0.weight": (h, 4), "plan.0.bias": (h,), "plan.2.weight": (BINS, h), "plan.2.bias": (BINS,),
                "correction.0.weight": (width,), "correction.0.bias": (width,),
                "correction.2.weight": (h, width), "correction.2.bias": (h,),
                "correction.4.weight": (BINS, h), "correction.4.bias": (BINS,)}


class AdaNet(nn.Module):
    """logits = plan(scalars) + correction(instance features).

    `plan` is the static part: which stretches of the timeline to reuse as a function of the budget,
    the step count and rho. `correction` moves it per instance from the latent and the conditioning;
    its inputs are normalised, the conditioning passes a fixed random projection (so no weight is
    spent on the text encoder's width), dropout in training keeps it to what generalises, and it
    starts at zero, so an untrained correction leaves the static plan."""

    def __init__(self, latent_channels: int, cond_width: int, hidden: int = 64, bins: int = BINS):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(cond_width, 16, generator=g) / math.sqrt(cond_width))
        self.plan = nn.Sequential(nn.Linear(4, hidden), nn.SiLU(), nn.Linear(hidden, bins))
        width = 2 * latent_channels + 16 + 16
        self.correction = nn.Sequential(nn.LayerNorm(width), nn.Dropout(0.3), nn.Linear(width, hidden), nn.SiLU(),
                                        nn.Linear(hidden, bins))
        nn.init.zeros_(self.correction[-1].weight)
        nn.init.zeros_(self.correction[-1].bias)

    def forward(self, latent: torch.Tensor, cond: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        """Logits of 'this stretch computes', [batch, bins]."""
        plan, correction = self.parts(latent, cond, scalars)
        return plan + correction

    def parts(self, latent: torch.Tensor, cond: torch.Tensor, scalars: torch.Tensor):
        """(static plan logits, per-instance correction): the warm start penalises the correction alone."""
        return self.plan(scalars), self.correction(torch.cat([latent, cond @ self.projection], dim=1))


def latent_features(x: torch.Tensor) -> torch.Tensor:
    """[B, C, *spatial] -> [B, 2C + 16]: per-channel mean and std, channel mean pooled to 4x4; reduced
    where the latent lives, returned on the CPU, where the (tiny) network runs."""
    x = x.detach().float()
    flat = x.flatten(2)
    image = x.mean(1)
    while image.dim() > 3:        # video: average the frames
        image = image.mean(1)
    pooled = F.adaptive_avg_pool2d(image.unsqueeze(1), 4).flatten(1)
    return torch.cat([flat.mean(-1), flat.std(-1, unbiased=False), pooled], dim=1).cpu()


def cond_features(context: Optional[torch.Tensor], rows: int, width: int, label: str = "ada") -> torch.Tensor:
    """Token mean of the conditioning, one row per latent row ([rows, width]); zeros when the forward
    carries no conditioning tensor. A conditioning of another width is refused, never zeroed."""
    if context is None or context.dim() != 3:
        return torch.zeros(rows, width)
    if context.shape[-1] != width:
        raise AdaError(f"policy {label!r} reads conditioning {width} wide; this model's conditioning is "
                       f"{context.shape[-1]} wide (another text encoder or model). Train a policy for this model "
                       "with BlockDance Ada Train.")
    c = context.detach().float().mean(1).cpu()
    return c if c.shape[0] == rows else c.mean(0, keepdim=True).expand(rows, width)


def budget_feature(target: float) -> float:
    """The target speedup as the network reads it (the fourth scalar)."""
    return (target - 1) / 3


def scalars(position: float, sigma: float, steps: int, target: float, rows: int) -> torch.Tensor:
    values = [position, math.log1p(max(sigma, 0.0)), math.log(max(steps, 1)) / math.log(100), budget_feature(target)]
    return torch.tensor(values, dtype=torch.float32).expand(rows, 4)


def rho_step(positions, rho: float) -> int:
    """The step where a policy deciding at `rho` plans: the first at or after rho on the timeline,
    never step 0 (nothing is cached yet); len(positions) when no step is left."""
    return next((k for k, p in enumerate(positions) if p >= rho - POSITION_EPS and k >= 1), len(positions))


def read_bins(bins: torch.Tensor, positions: List[float]) -> torch.Tensor:
    """Per-bin values at timeline positions (a plan made on normalised time, read for any run)."""
    n = bins.shape[-1]
    return bins[..., [bin_of(p, n) for p in positions]]


@dataclass(frozen=True)
class AdaPolicy(StepPolicy):
    net: Any                       # AdaNet (shared, never trained through this object)
    meta: AdaMeta
    target_speedup: float
    label: str = "ada"
    sample: bool = False           # training: Bernoulli masks (the trainer puts the network in train mode); test: decoded
    decode: str = "budget"         # "budget": the target's number of reuse steps; "threshold": m > 0.5 computes
    # training: the seed the rollout's mask and dropout draw from (the trainer draws it per rollout). Not
    # the global generator: sampling reseeds it for the noise (comfy.sample.prepare_noise), which would
    # give every rollout of an item one mask.
    mask_seed: Optional[int] = None
    name = "ada"

    def ranges(self, num_blocks: int):
        return ((range(self.meta.cut), self.meta.mode),)

    def start(self, timeline: Timeline, num_blocks: int) -> "AdaRun":
        return AdaRun(self, timeline)

    def describe(self, num_blocks: int) -> dict:
        return {"policy": self.label, "target": f"{self.target_speedup:g}x"}

    def check_model(self, model: ModelFingerprint) -> None:
        mine = self.meta.fingerprint
        if mine.mismatches(model):
            raise AdaError(f"policy {self.label!r} was trained for {mine.describe()}; this model is "
                           f"{model.describe()}. Train one for it with BlockDance Ada Train.")


SEED_RANGE = 2 ** 62   # mask seeds are drawn below this


def draw_seed(generator: torch.Generator) -> int:
    """The next rollout's mask seed from the trainer's generator."""
    return int(torch.randint(0, SEED_RANGE, (1,), generator=generator))


@contextlib.contextmanager
def own_randomness(seed: Optional[int]):
    """Dropout and the Bernoulli masks draw from `seed` (when given), and the sampler's global random
    stream is left as it was, so a policy in training never shifts the sampling noise."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def autograd():
    """Gradients on, even inside torch.inference_mode(), which ComfyUI wraps around every node it runs:
    the policy's training forward and backward passes step out of it (as ComfyUI's own LoRA trainer
    does); the model's sampling stays as the caller runs it."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class AdaRun(PolicyRun):
    def __init__(self, policy: AdaPolicy, timeline: Timeline):
        self.policy = policy
        self.timeline = timeline
        m = policy.meta
        self.blocks = range(m.cut)
        self.rho_step = rho_step(timeline.positions, m.rho)
        self.computes: Optional[List[bool]] = None   # per step from rho on
        self.log_prob: Optional[torch.Tensor] = None  # training: log pi(mask), with grad
        self.source: Optional[int] = None

    def decide(self, seen: Observation) -> StepAction:
        k, m = seen.step, self.policy.meta
        if k == 0 and self.rho_step >= self.timeline.num_steps and seen.record is not None:
            seen.record.note(f"policy {self.policy.label!r} decides at rho={m.rho:g}, after the last step of this "
                             f"{self.timeline.num_steps}-step run: nothing was reused (use more steps or a policy "
                             "with an earlier rho)")
        if k < self.rho_step:
            self.source = k
            return cache_step(self.blocks, m.mode) if k == self.rho_step - 1 else FULL
        if self.computes is None:
            self.computes = self._plan(seen)
        if self.computes[k - self.rho_step]:
            nxt = k + 1 - self.rho_step
            if nxt < len(self.computes) and not self.computes[nxt]:
                self.source = k
                return cache_step(self.blocks, m.mode)
            return FULL
        return reuse_step(self.blocks, m.mode, self.source)

    def _plan(self, seen: Observation) -> List[bool]:
        started = time.perf_counter()
        try:
            return self._decide_mask(seen)
        finally:
            self.plan_ms = (time.perf_counter() - started) * 1000   # the policy's whole cost in a run

    def _decide_mask(self, seen: Observation) -> List[bool]:
        p, m = self.policy, self.policy.meta
        x = seen.x
        if x is None or x.dim() < 3 or x.shape[1] != m.latent_channels:
            raise AdaError(f"policy {p.label!r} reads latents with {m.latent_channels} channels; this run's latent is "
                           f"{tuple(x.shape) if x is not None else 'unknown'}")
        rows = x.shape[0]
        positions = list(self.timeline.positions[self.rho_step:])
        with autograd() if p.sample else torch.no_grad(), own_randomness(p.mask_seed if p.sample else None):
            features = (latent_features(x), cond_features(seen.context, rows, m.cond_width, p.label),
                        scalars(self.timeline.positions[seen.step], self.timeline.sigmas[seen.step],
                                self.timeline.num_steps, p.target_speedup, rows))
            self.features = tuple(f.detach() for f in features)   # what the network saw (training reuses it)
            probs = torch.sigmoid(p.net(*features)).mean(0)        # one decision for the batch
            step_probs = read_bins(probs, positions).clamp(1e-4, 1 - 1e-4)
            if p.sample:
                computes = torch.bernoulli(step_probs.detach())
                self.log_prob = (computes * step_probs.log() + (1 - computes) * (1 - step_probs).log()).sum()
            elif p.decode == "threshold":
                computes = (step_probs > 0.5).float()
            else:
                computes = self._budget(step_probs)
        self.probabilities = step_probs.detach()
        return [bool(c) for c in computes.tolist()]

    def _budget(self, step_probs: torch.Tensor) -> torch.Tensor:
        """Reuse the steps least likely to need computing, as many as reach the target speedup."""
        need = blocks_to_save(self.timeline.num_steps * self.policy.meta.num_blocks, self.policy.target_speedup)
        reuse = min(len(step_probs), math.ceil(need / self.policy.meta.cut))
        computes = torch.ones_like(step_probs)
        computes[torch.argsort(step_probs, stable=True)[:reuse]] = 0.0
        return computes

    def result(self) -> "AdaRun":
        """Training reads what the network saw (`features`) and `log_prob` from the run's record."""
        return self

    def summary(self) -> dict:
        if self.computes is None:
            return {}
        return {"mask": "".join("C" if c else "R" for c in self.computes), "rho": self.rho_step,
                "plan_ms": f"{self.plan_ms:.2f}"}


def save(path: str, net: AdaNet, meta: AdaMeta) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, path, metadata=meta.to_metadata())


def load(path: str) -> Tuple[AdaNet, AdaMeta]:
    """Only safetensors. The metadata is checked, then every tensor's name, shape and dtype against
    what the metadata describes, all before a tensor is read or the network is built."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt") as f:
            meta = AdaMeta.from_metadata(f.metadata(), path)
            _check_weights(f, meta.weight_shapes(), path)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except AdaError:
        raise
    except Exception as err:   # not a safetensors file, truncated, ...
        raise AdaError(f"{path}: cannot be read as a safetensors policy ({type(err).__name__}: {err})") from None
    net = AdaNet(meta.latent_channels, meta.cond_width, meta.hidden)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as err:
        raise AdaError(f"{path}: weights do not fit the network its metadata describes ({err})") from None
    return net.eval(), meta


def _check_weights(f, expected: dict, path: str) -> None:
    names = set(f.keys())
    if names != set(expected):
        missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
        raise AdaError(f"{path}: tensors do not match the policy network its metadata describes "
                       f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for name, shape in expected.items():
        tensor = f.get_slice(name)
        found = tuple(tensor.get_shape())
        if found != shape or tensor.get_dtype() not in ("F16", "BF16", "F32", "F64"):
            raise AdaError(f"{path}: tensor {name!r} is {tensor.get_dtype()} {list(found)}; the metadata "
                           f"(hidden, latent_channels, cond_width) needs a float tensor of shape {list(shape)}")
