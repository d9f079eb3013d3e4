"""The cache/reuse machinery, independent of any host.

`PatchSpec` describes a patch (policy, block count, batch dim, stage of each block). It is immutable
and shared by every clone of a patched model. `SamplingRun` holds everything one sampler run needs
(clock, policy state, cache, record, the forwards in flight); nothing outlives it. A host drives it in
nested scopes:

    run = spec.new_run(timeline)                        # a sampler run begins
        run.begin_evaluation()                          # one model evaluation of the sampler
            run.begin_call(sigma, keys, ...)            # one model forward within it
                run.run_block(j, state, compute, ...)   # from the hook of each hooked block
            run.end_call()
        run.step_done(k)                                # the sampler's step callback
    record = run.finish()                               # frees every cached tensor

Only the hooked blocks (every block the policy may skip) carry a hook. On a reuse step the blocks of
the range before its last pass their input on unchanged (the real input reaches the last one at no
cost), and the last returns the cached output (`blockdance`) or its input plus the cached change
(`delta`). Blocks outside the range run.

Delta keeps the change the range's blocks themselves made. Where nothing is added into the hidden
state between blocks that is output - input of the range. Where something is (ControlNet residuals,
post-block patches, Wan S2V's audio injector), the host says so and the change is summed block by
block on cache steps, so those residuals are not kept: on a reuse step the current step's residuals
reach the range's last block through the pass-through, as they would in the uncached model.

Threads: ComfyUI core's multi-GPU split runs the conditioning chunks of one evaluation as parallel
forwards, one thread per device, sharing the run. The forward in flight (`_Call`) is therefore kept
per thread, and everything run-wide (clock, decisions, policy state, cache, record) changes under the
run's lock. A step is decided once, by the first forward to reach it; the others take that decision.
Each chunk keeps its own cache entry, made from (and left on) its own device.

The engine trusts no block it did not see: the host reports a forward that carries another node's
patch on a hooked block (it runs in full and is counted as displaced), and a hooked block reached
before the first one resolved the forward displaces it too.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from .actions import FULL, StepAction, StepKind, cache_step
from .cache import CacheEntry, FeatureCache
from .guidance import GuidanceGuard
from .policy import Observation, StepPolicy, check_action
from .record import RunRecord, StepRecord
from .timeline import StepClock, Timeline
from .tree import tree_add, tree_cat, tree_chunk, tree_clone, tree_leaves, tree_signature, tree_sub


@dataclass(frozen=True)
class PatchSpec:
    policy: StepPolicy
    num_blocks: int
    batch_dim: int = 0
    block_stages: tuple = ()   # stage index of each block (two-stage models); empty: a single stage

    def __post_init__(self):
        hooked = self.policy.blocks(self.num_blocks)
        if len(hooked) == 0 or hooked.start < 0 or hooked.stop > self.num_blocks or hooked.step != 1:
            raise ValueError(f"policy {self.policy.name!r} hooks blocks {hooked} of a {self.num_blocks}-block stack")
        object.__setattr__(self, "hooked_blocks", hooked)

    def __deepcopy__(self, memo):  # immutable: every clone of a patched model shares it
        return self

    def stage(self, index: int) -> int:
        return self.block_stages[index] if self.block_stages else 0

    def new_run(self, timeline: Timeline) -> "SamplingRun":
        return SamplingRun(self, timeline)


@dataclass
class _Call:
    """One model forward in flight (on one thread)."""
    step: Optional[int]
    keys: List[Hashable]
    record: StepRecord
    evaluation: int
    x: Any = None
    context: Any = None
    residuals: Optional[str] = None           # what adds into the hidden state between blocks (ControlNet, ...)
    action: StepAction = FULL
    resolved: bool = False
    displaced: bool = False
    signatures: List[tuple] = field(default_factory=list)
    base: Any = None                           # delta cache step: the range's input, or its blocks' summed change
    base_block: int = -1                       # the block whose layout `base` is in
    entries: List[CacheEntry] = field(default_factory=list)
    stored_keys: List[Hashable] = field(default_factory=list)
    pending_side: dict = field(default_factory=dict)
    side_seen: Dict[str, int] = field(default_factory=dict)


class SamplingRun:
    def __init__(self, spec: PatchSpec, timeline: Timeline):
        self.spec = spec
        self.timeline = timeline
        self.clock = StepClock(timeline.sigmas)
        self.policy = spec.policy.start(timeline, spec.num_blocks)
        self.observes = self.policy.observes   # blocks a measuring policy watches (empty otherwise)
        self.cache = FeatureCache()
        self.record = RunRecord(timeline.num_steps, spec.num_blocks,
                                [StepRecord(k, timeline.sigmas[k], timeline.positions[k]) for k in range(timeline.num_steps)])
        self.decisions: Dict[int, StepAction] = {}
        self.stored_in: Dict[Hashable, int] = {}   # key -> evaluation that made its entry
        self.evaluation = 0
        self._calls: Dict[int, _Call] = {}   # thread id -> the forward that thread has in flight
        self._lock = threading.RLock()      # guards everything above against parallel forwards
        self.scratch: dict = {}   # per-run helpers of the host adapter (e.g. block proxies)
        self.guidance = GuidanceGuard()
        self.finished = False

    def __deepcopy__(self, memo):  # a copy of a run's options still belongs to that run
        return self

    @property
    def call(self) -> Optional[_Call]:
        """The forward in flight on the calling thread; None outside a forward."""
        return self._calls.get(threading.get_ident())

    # ------------------------------------------------------------------ run scope
    def begin_evaluation(self) -> None:
        """A new model evaluation of the sampler (its main forwards, then any guidance extras)."""
        with self._lock:
            self.evaluation += 1
            self.guidance.begin_evaluation()

    def step_to_redo(self) -> Optional[int]:
        """After an evaluation: the step to evaluate again in full because a guidance extra replaced a
        skipped block while the main forward reused (see guidance.py); None when nothing is to redo."""
        with self._lock:
            return None if self.finished else self.guidance.step_to_redo()

    def redo_in_full(self, step: int) -> None:
        """The evaluation just done at `step` is discarded: the step computes in full from now on, its
        discarded work is counted as run (not as the uncached model's), and the run says so."""
        with self._lock:
            e, record = self.guidance.current, self.record.step(step)
            record.blocks_redone += e.blocks_run      # run, but not what the uncached model runs for this step
            record.blocks_skipped -= e.blocks_skipped
            record.reused_calls -= e.reused_calls
            self.decisions[step] = FULL
            record.planned, record.mode, record.blocks = FULL.kind.value, "", None
            self.guidance.current.reused_step = None
            self.note(GuidanceGuard.NOTE)

    def step_done(self, step: int) -> None:
        with self._lock:
            self.clock.advance(step)

    def note(self, text: str) -> None:
        with self._lock:
            self.record.note(text)

    def finish(self) -> RunRecord:
        """Return the run's record and drop every tensor the run held."""
        with self._lock:
            record = self.record
            record.cache_peak_bytes = self.cache.peak_bytes
            record.extra.update(self.policy.summary() if self.policy is not None else {})
            self.cache.clear()
            self._calls.clear()
            self.scratch.clear()
            self.decisions.clear()
            self.policy = None
            self.observes = frozenset()
            self.finished = True
            return record

    # ----------------------------------------------------------------- call scope
    def begin_call(self, sigma: float, keys: Sequence[Hashable], x: Any = None, context: Any = None,
                   displaced_by: Optional[str] = None, residuals: Optional[str] = None) -> None:
        """Start one model forward at `sigma` over the conditioning chunks `keys` (in batch order).
        displaced_by: why this forward carries another node's patch on a hooked block (runs in full);
        residuals: what adds into the hidden state between blocks in this forward, if anything."""
        with self._lock:
            if self.finished:
                return
            step = self.clock.step_of(sigma)
            record = self.record.step(step)
            record.calls += 1
            call = _Call(step, list(keys) or [None], record, self.evaluation, x, context, residuals)
            self._calls[threading.get_ident()] = call
            if step is None:
                call.resolved = True   # off the schedule: nothing planned, computed in full
            elif displaced_by:
                self._displace(call, displaced_by)

    def end_call(self) -> None:
        call = self._calls.pop(threading.get_ident(), None)
        if call is None:
            return
        with self._lock:
            if not call.resolved and call.step is not None:
                self._displace(call, "a forward never reached BlockDance's first hooked block (another node holds it)")
            skipped = call.action.skipped if not call.displaced else 0
            call.record.blocks_skipped += skipped
            call.record.blocks_run += self.spec.num_blocks - skipped
            self.guidance.saw_call(call.step, call.action.kind is StepKind.REUSE and not call.displaced,
                                   call.displaced, self.spec.num_blocks - skipped, skipped)
            for name, value in call.pending_side.items():
                for key, chunk in zip(call.keys, self._chunks(value, call.keys)):
                    if key in call.stored_keys:
                        self.cache.attach_side(key, name, chunk)
            call.record.cache_bytes = self.cache.nbytes()

    def _displace(self, call: _Call, why: str) -> None:
        with self._lock:
            call.displaced = call.resolved = True
            call.action = FULL
            call.record.displaced_calls += 1
            self.note(f"{why}; such forwards ran in full")

    # ------------------------------------------------------------ side branches
    @property
    def current_kind(self) -> Optional[StepKind]:
        """What the forward in flight does once it is resolved; None outside a forward or before."""
        call = self.call
        return call.action.kind if call is not None and call.resolved else None

    def side_name(self, prefix: str) -> str:
        """A name for the n-th result of a side branch in this forward (e.g. one per VACE context)."""
        seen = self.call.side_seen
        n = seen.get(prefix, 0)
        seen[prefix] = n + 1
        return f"{prefix}:{n}"

    def keep_side(self, name: str, value: Any) -> None:
        """On a cache forward, keep the result of a side branch that runs inside the skipped range so
        that reuse forwards can replay it instead of computing it."""
        if self.current_kind is StepKind.CACHE:
            self.call.pending_side[name] = value

    def can_replay_side(self, name: str) -> bool:
        return self.current_kind is StepKind.REUSE and all(name in e.side for e in self.call.entries)

    def replay_side(self, name: str) -> Any:
        """On a reuse forward, the side result kept at the cache step (batch rows in call order)."""
        return tree_cat([e.side[name] for e in self.call.entries], dim=self.spec.batch_dim)

    # --------------------------------------------------------------- block scope
    def runs_plainly(self, index: int) -> bool:
        """True when hooked block `index` just computes in this forward, so the hook may call the real
        block without building a state; False when it must go through run_block."""
        call = self.call
        if call is None:
            return True
        if not call.resolved:
            if index == self.spec.hooked_blocks.start:
                return False   # the step is decided here, with this block's input
            self._displace(call, f"block {index} ran before BlockDance's first hooked block "
                                 f"{self.spec.hooked_blocks.start} (another node's patch holds it)")
            return True
        if index in self.observes and not call.displaced and call.step is not None:
            return False
        action = call.action
        if action.kind is StepKind.FULL or index not in action.blocks:
            return True
        if action.kind is StepKind.REUSE or (action.mode == "delta" and call.residuals):
            return False
        return index != action.blocks[-1] and not (action.mode == "delta" and index == action.blocks[0])

    def passes_through(self, index: int) -> bool:
        """True when hooked block `index` lies inside the range a resolved reuse forward skips, before
        its last block: the hook returns its input unchanged without building anything."""
        call = self.call
        if call is None or not call.resolved:
            return False
        action = call.action
        return action.kind is StepKind.REUSE and index in action.blocks and index != action.blocks[-1]

    def run_block(self, index: int, state: Any, compute: Callable[[Any], Any],
                  to_stage: Optional[Callable[[Any], Any]] = None) -> Any:
        """Run, skip or replace hooked block `index` for the forward in flight.

        state:    the block's hidden-state input (tensor, dict of streams or tuple)
        compute:  runs the real block on a state and returns its output state
        to_stage: delta across stages: turns a state of the first stage into this block's layout
                  (e.g. Flux single blocks see cat(txt, img))
        """
        if self.runs_plainly(index):
            return compute(state)
        call = self.call
        if not call.resolved:
            with self._lock:
                self._resolve(call, state)
            if self.runs_plainly(index):
                return compute(state)
        action = call.action
        if index in self.observes and (action.kind is StepKind.FULL or index not in action.blocks):
            before = tree_clone(state) if index in self.policy.observes_inputs else None   # blocks work in place
            out = compute(state)
            with self._lock:
                self.policy.see(call.step, call.evaluation, index, before, out, to_stage)
            return out
        last = action.blocks[-1]
        if action.kind is StepKind.REUSE:
            if index != last:
                return state
            cached = tree_cat([e.features for e in call.entries], dim=self.spec.batch_dim)
            return tree_add(state, cached) if action.mode == "delta" else cached
        if action.mode != "delta":
            out = compute(state)
            if index == last:
                self._store(call, out)
            return out
        if call.residuals:   # sum the blocks' own changes; what lands between them is not theirs
            before = tree_clone(state)   # blocks modify their input in place
            out = compute(state)
            change = tree_sub(out, before)
            call.base = change if call.base is None else tree_add(self._in_layout(call, index, to_stage), change)
            call.base_block = index
            if index == last:
                self._store(call, call.base)
            return out
        if index == action.blocks[0]:
            call.base, call.base_block = tree_clone(state), index   # the block may modify its input in place
        out = compute(state)
        if index == last:
            self._store(call, tree_sub(out, self._in_layout(call, index, to_stage)))
        return out

    def _in_layout(self, call: _Call, index: int, to_stage: Optional[Callable[[Any], Any]]) -> Any:
        """call.base in block `index`'s layout (two-stage models: first-stage streams joined)."""
        if to_stage is not None and self.spec.stage(call.base_block) != self.spec.stage(index):
            return to_stage(call.base)
        return call.base

    def _resolve(self, call: _Call, block_input: Any) -> None:
        """The first hooked block of a forward: decide the step (once per step: a parallel forward of the
        same step waits on the lock and takes that decision), then confirm a planned reuse against the
        cache or fall back to computing and caching. Called under the run's lock."""
        call.resolved = True
        step, record = call.step, call.record
        action = self.decisions.get(step)
        if action is None:
            action = self.policy.decide(Observation(step, self.timeline, call.x, call.context, block_input, self.record))
            problem = check_action(action, self.spec.hooked_blocks, step, self.spec.policy)
            if problem:
                raise RuntimeError(problem)   # a policy bug, never user input
            if self.guidance.active and action.kind is StepKind.REUSE:
                action = FULL   # a guidance extra over skipped blocks is running: see guidance.py
                self.note(GuidanceGuard.NOTE)
            self.decisions[step] = action
            record.planned, record.mode = action.kind.value, action.mode
            record.blocks = [action.blocks.start, action.blocks.stop] if action.kind is not StepKind.FULL else None
        if action.kind is StepKind.FULL:
            return
        chunks = self._chunks(block_input, call.keys)
        if len(chunks) != len(call.keys):   # rows do not split evenly: cache the forward as a whole
            call.keys = [tuple(call.keys)]
        call.signatures = [tree_signature(c) for c in chunks]
        if action.kind is StepKind.REUSE:
            entries = [self.cache.usable(key, sig, action.blocks, action.source, step, action.mode)
                       for key, sig in zip(call.keys, call.signatures)]
            if all(e is not None for e in entries):
                call.action, call.entries = action, entries
                record.reused_calls += 1
                return
            record.fallback_calls += 1   # nothing usable cached for this forward: compute and cache now
        call.action = cache_step(action.blocks, action.mode)

    def _store(self, call: _Call, features: Any) -> None:
        """Keep the range's result per chunk. A later evaluation at the same step replaces an entry
        (Heun's corrector for step k-1 runs at step k's sigma before step k's own forward); within one
        evaluation the first forward wins (guidance extras such as SLG follow the main forward)."""
        action = call.action
        call.base = None
        stored = False
        with self._lock:
            for key, chunk, signature in zip(call.keys, self._chunks(features, call.keys), call.signatures):
                entry = self.cache.entry(key)
                if entry is not None and entry.step == call.step and self.stored_in.get(key) == call.evaluation:
                    continue
                self.cache.store(key, chunk, call.step, action.blocks, action.mode, signature)
                self.stored_in[key] = call.evaluation
                call.stored_keys.append(key)
                stored = True
            if stored:
                call.record.cached_calls += 1

    def _chunks(self, state: Any, keys: List[Hashable]) -> List[Any]:
        leaves = tree_leaves(state)
        n = len(keys)
        if n > 1 and all(t.shape[self.spec.batch_dim] % n == 0 for t in leaves):
            return tree_chunk(state, n, self.spec.batch_dim)
        return [state]
