"""The cache/reuse state machine of one patched model, independent of any host.

A host adapter drives it in three nested scopes:

    engine.start_run()                                   # a sampler run begins
        engine.begin_call(sample_sigmas, sigma, keys)    # one model forward
            engine.run_block(j, state, compute, to_stage)   # from the hook of block j <= i
        engine.end_call()
    stats = engine.finish_run()                          # frees every cached tensor

Only blocks 0..i need a hook: on a reuse step blocks 0..i-1 return their input unchanged (the
real input of block 0 thus flows to block i at no cost), and block i returns the cached F_i
(`blockdance`) or its input plus the cached F_i - F_in (`delta`). Blocks after i always run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, List, Optional, Sequence

from .cache import CacheEntry, FeatureCache
from .config import BlockDanceConfig
from .schedule import StepAction, StepClock, plan_from_reuse, plan_groups, resample_mask
from .stats import RunStats
from .tree import tree_cat, tree_chunk, tree_clone, tree_leaves, tree_map, tree_signature


@dataclass
class _Call:
    step: Optional[int]
    sigma: float
    action: StepAction
    keys: List[Hashable]
    started: bool = False
    input_signatures: List[tuple] = field(default_factory=list)
    block0_input: Any = None                 # delta mode: F_in of a cache step
    entries: List[CacheEntry] = field(default_factory=list)
    stored_keys: List[Hashable] = field(default_factory=list)   # entries this call wrote
    pending_side: dict = field(default_factory=dict)            # side results to attach at end_call


class BlockDanceEngine:
    def __init__(self, config: BlockDanceConfig, num_blocks: int, batch_dim: int = 0):
        self.config = config
        self.num_blocks = num_blocks
        self.skipped = config.skipped_blocks(num_blocks)
        self.cache_index = self.skipped - 1
        self.batch_dim = batch_dim
        self.reuse_mask_override: Optional[Sequence[bool]] = None
        self._reset()

    @property
    def hooked_blocks(self) -> range:
        """The blocks whose hook the engine needs; the rest of the stack runs untouched."""
        return range(self.skipped)

    # ----------------------------------------------------------------- run scope
    def _reset(self) -> None:
        self.cache = FeatureCache()
        self.stats = RunStats()
        self.clock: Optional[StepClock] = None
        self.plan: List[StepAction] = []
        self.call: Optional[_Call] = None

    def start_run(self) -> None:
        self.cache.clear()
        self._reset()

    def finish_run(self) -> RunStats:
        """Return the run's statistics and free everything the run cached."""
        stats = self.stats
        stats.cache_peak_bytes = self.cache.peak_bytes
        self.cache.clear()
        self._reset()
        return stats

    def _plan(self, num_steps: int) -> List[StepAction]:
        mask = self.reuse_mask_override if self.reuse_mask_override is not None else self.config.reuse_mask
        if mask is not None:
            return plan_from_reuse(resample_mask(mask, num_steps))
        c = self.config
        return plan_groups(num_steps, c.N, c.start_percent, c.end_percent)

    # ---------------------------------------------------------------- call scope
    def begin_call(self, sample_sigmas: Sequence[float], sigma: float, keys: Sequence[Hashable]) -> StepAction:
        """Start one model forward at `sigma` over the conditioning chunks `keys` (in batch order)."""
        if self.clock is None or not self.clock.matches(sample_sigmas):
            self.cache.clear()  # another schedule: nothing cached belongs to it
            self.clock = StepClock(sample_sigmas)
            self.plan = self._plan(self.clock.num_steps)
            self.stats.num_steps = self.clock.num_steps
        step = self.clock.step_of(sigma)
        action = StepAction.FULL if step is None else self.plan[step]
        self.call = _Call(step=step, sigma=float(sigma), action=action, keys=list(keys) or [None])
        self.stats.model_calls += 1
        if step is not None:
            self.stats.steps_seen.add(step)
        return action

    def end_call(self) -> None:
        call, self.call = self.call, None
        if call is not None and call.started:
            # Blocks after the cache point carry no hook; they ran in every forward that started.
            self.stats.block_calls_run += self.num_blocks - self.skipped
            for name, value in call.pending_side.items():
                for key, chunk in zip(call.keys, self._chunks(value, call.keys)):
                    if key in call.stored_keys:
                        self.cache.attach_side(key, name, chunk)

    # ---------------------------------------------------------- side branches
    @property
    def current_action(self) -> Optional[StepAction]:
        """What the current forward does once block 0 has confirmed it; None outside a forward."""
        return self.call.action if self.call is not None and self.call.started else None

    def keep_side(self, name: str, value: Any) -> None:
        """On a cache forward, keep the result of a side branch that runs inside the skipped range
        so that reuse forwards can replay it instead of computing it."""
        if self.current_action is StepAction.CACHE:
            self.call.pending_side[name] = value

    def replay_side(self, name: str) -> Any:
        """On a reuse forward, the side result kept at the cache step (batch rows in call order)."""
        return tree_cat([e.side[name] for e in self.call.entries], dim=self.batch_dim)

    def can_replay_side(self, name: str) -> bool:
        return self.current_action is StepAction.REUSE and all(name in e.side for e in self.call.entries)

    # --------------------------------------------------------------- block scope
    def runs_plainly(self, index: int) -> bool:
        """True when block `index` just computes in this call (a full step, or no sampler run):
        the hook may call the real block directly, without building a state. Counts the block."""
        call = self.call
        if call is None or index > self.cache_index:
            return True
        if call.action is not StepAction.FULL:
            return False
        call.started = True  # a full call needs no chunking, signatures or lookups at block 0
        self.stats.block_calls_run += 1
        return True

    def run_block(self, index: int, state: Any, compute: Callable[[Any], Any],
                  to_stage: Optional[Callable[[Any], Any]] = None) -> Any:
        """Run, skip or replace block `index` of the stack for the current call.

        state:    the block's hidden state input (tensor, dict of streams or tuple)
        compute:  runs the real block on a state and returns its output state
        to_stage: delta mode, two-stage models: turns a block-0 input into the layout of this
                  block's stage (e.g. Flux single blocks see cat(txt, img))
        """
        if self.runs_plainly(index):
            return compute(state)
        call = self.call
        if index == 0:
            self._resolve(call, state)
        if call.action is StepAction.REUSE:
            self.stats.block_calls_skipped += 1
            if index < self.cache_index:
                return state
            cached = tree_cat([e.features for e in call.entries], dim=self.batch_dim)
            if self.config.mode == "delta":
                return tree_map(lambda current, offset: current + offset, state, cached)
            return cached
        self.stats.block_calls_run += 1
        out = compute(state)
        if call.action is StepAction.CACHE and index == self.cache_index:
            self._store(call, out, to_stage)
        return out

    def _chunks(self, state: Any, keys: List[Hashable]) -> List[Any]:
        leaves = tree_leaves(state)
        n = len(keys)
        if n > 1 and all(t.shape[self.batch_dim] % n == 0 for t in leaves):
            return tree_chunk(state, n, self.batch_dim)
        return [state]

    def _resolve(self, call: _Call, block0_input: Any) -> None:
        """At block 0 a cache or reuse call sees its real input: confirm a planned reuse or fall back."""
        call.started = True
        chunks = self._chunks(block0_input, call.keys)
        if len(chunks) != len(call.keys):  # rows do not split evenly: cache the call as a whole
            call.keys = [tuple(call.keys)]
        call.input_signatures = [tree_signature(c) for c in chunks]
        if call.action is StepAction.REUSE:
            entries = [self.cache.lookup(k, s) for k, s in zip(call.keys, call.input_signatures)]
            if all(e is not None and e.sigma != call.sigma for e in entries):
                call.entries = entries
                self.stats.reuse_calls += 1
                self.stats.steps_reused.add(call.step)
            else:
                call.action = StepAction.CACHE  # nothing usable cached: compute and cache now
                self.stats.fallback_calls += 1
        if call.action is StepAction.CACHE and self.config.mode == "delta":
            call.block0_input = tree_clone(block0_input)  # block 0 may modify it in place

    def _store(self, call: _Call, out: Any, to_stage: Optional[Callable[[Any], Any]]) -> None:
        features = out
        if self.config.mode == "delta":
            base = call.block0_input if to_stage is None else to_stage(call.block0_input)
            features = tree_map(lambda f, b: f - b, out, base)
            call.block0_input = None
        for key, chunk, signature in zip(call.keys, self._chunks(features, call.keys), call.input_signatures):
            # A second forward at the same sigma (Heun's correction, SLG, PAG) must not replace
            # the features of the step's own forward.
            if not self.cache.has_at(key, call.sigma):
                self.cache.store(key, chunk, call.sigma, signature)
                call.stored_keys.append(key)
