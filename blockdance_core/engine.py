"""The cache/reuse machinery, independent of any host.

`PatchSpec` describes a patch (policy, block count, batch dim, stage of each block). It is immutable
and shared by every clone of a patched model. `SamplingRun` holds everything one sampler run needs
(clock, policy state, cache, record, the forwards in flight); nothing outlives it. A host drives it in
nested scopes:

    run = spec.new_run(timeline)                        # a sampler run begins
        run.begin_evaluation()                          # one model evaluation of the sampler
            run.begin_call(sigma, keys, ...)            # one model forward within it
                run.role(j)                             # from the hook of each hooked block: run / pass / replace
                run.run_block(j, state, compute, ...)   # when the answer is replace
            run.end_call()
        run.step_done(k)                                # the sampler's step callback
    record = run.finish()                               # frees every cached tensor

Only the hooked blocks (every block the policy may skip) carry a hook. On a reuse step the blocks of
the range before its last pass their input on unchanged (the real input reaches the last one at no
cost), and the last returns the cached output (`blockdance`) or its input plus the cached change
(`delta`). Blocks outside the range run.

A reuse step may forecast instead of copy (StepAction.forecast): the cache keeps that policy's
number of anchors per chunk (earlier entries for the same range), and the range's last block gets
their extrapolation to the step's sigma or index (forecast.py; in delta mode, of the blocks' own
change; a Chebyshev fit maps the run's whole range onto [-1, 1]).
With fewer anchors than the forecast needs it uses the highest order they allow (one: a copy).

Delta keeps the change the range's blocks themselves made. Where nothing is added into the hidden
state between blocks that is output - input of the range. Where something is (ControlNet residuals,
post-block patches, Wan S2V's audio injector), the host says so and the change is summed block by
block on cache steps, so those residuals are not kept: on a reuse step the current step's residuals
reach the range's last block through the pass-through, as they would in the uncached model.

Threads: ComfyUI core's multi-GPU split runs the conditioning chunks of one evaluation as parallel
forwards, one thread per device, sharing the run. The forward in flight (`_Call`) is therefore kept
per thread (`Forward`: it resolves the step, keeps and sums the range's result), and everything run-wide (clock, decisions, policy state, cache, record) changes under the
run's lock. A step is decided once, by the first forward to reach it; the others take that decision.
Each chunk keeps its own cache entry, made from (and left on) its own device.

The engine trusts no block it did not see: the host reports a forward that carries another node's
patch on a hooked block (it runs in full and is counted as displaced), and a hooked block reached
before the first one resolved the forward displaces it too.
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from .actions import FULL, StepAction, StepKind, cache_step
from .cache import CacheEntry, FeatureCache
from .forecast import COPY, combine, weights
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


class Role(enum.Enum):
    """What the hook of a hooked block does in the forward in flight (SamplingRun.role)."""
    RUN = "run"           # call the real block; nothing to build or keep
    PASS = "pass"         # return the block's input unchanged (inside a skipped range, before its last block)
    REPLACE = "replace"   # hand the block to run_block (decide the step, watch, keep, sum or return the cache)


class Forward:
    """One model forward in flight (on one thread): it resolves the step at its first hooked block,
    then runs, skips or replaces each hooked block, keeping (`_store`) and summing (delta) what the
    step's range produces. Run-wide state it touches (decisions, cache, record) changes under the
    run's lock."""

    def __init__(self, run: "SamplingRun", step: Optional[int], keys: List[Hashable], record: StepRecord,
                 evaluation: int, x: Any = None, context: Any = None, residuals: Optional[str] = None):
        self.run = run
        self.step = step
        self.keys = keys
        self.record = record
        self.evaluation = evaluation
        self.x = x
        self.context = context
        self.residuals = residuals   # what adds into the hidden state between blocks (ControlNet, ...)
        self.action: StepAction = FULL
        self.resolved = False
        self.displaced = False
        self.signatures: List[tuple] = []
        self.base: Any = None        # delta cache step: the range's input, or its blocks' summed change
        self.base_block = -1         # the block whose layout `base` is in
        self.entries: List[CacheEntry] = []
        self.anchors: List[List[CacheEntry]] = []   # forecasting reuse: per chunk, the entries it reads
        self.stored_keys: List[Hashable] = []
        self.sides = SideResults()

    # ------------------------------------------------------------------ the one question
    def role(self, index: int) -> Role:
        """What hooked block `index` does in this forward; asks, never changes anything."""
        if not self.resolved:
            return Role.REPLACE   # the step is decided (or the forward displaced) in run_block
        action = self.action
        if action.kind is StepKind.FULL or index not in action.blocks:
            watched = index in self.run.observes and not self.displaced and self.step is not None
            return Role.REPLACE if watched else Role.RUN
        last = action.blocks[-1]
        if action.kind is StepKind.REUSE:
            return Role.PASS if index != last else Role.REPLACE
        if action.mode == "delta" and (self.residuals or index == action.blocks[0]):
            return Role.REPLACE
        return Role.REPLACE if index == last else Role.RUN

    # ------------------------------------------------------------------ acting on it
    def run_block(self, index: int, state: Any, compute: Callable[[Any], Any],
                  to_stage: Optional[Callable[[Any], Any]]) -> Any:
        run = self.run
        if not self.resolved:
            with run._lock:
                if index == run.spec.hooked_blocks.start:
                    self._resolve(state)
                else:
                    run._displace(self, f"block {index} ran before BlockDance's first hooked block "
                                        f"{run.spec.hooked_blocks.start} (another node's patch holds it)")
        role = self.role(index)
        if role is Role.RUN:
            return compute(state)
        if role is Role.PASS:
            return state
        action = self.action
        if action.kind is StepKind.FULL or index not in action.blocks:   # a watched block outside the range
            return self._watched(index, state, compute, to_stage)
        last = action.blocks[-1]
        if action.kind is StepKind.REUSE:   # the range's last block (the others pass through)
            cached = tree_cat(self._reused_features(), dim=run.spec.batch_dim)
            return tree_add(state, cached) if action.mode == "delta" else cached
        if action.mode != "delta":
            out = compute(state)
            if index == last:
                self._store(out)
            return out
        if self.residuals:   # sum the blocks' own changes; what lands between them is not theirs
            before = tree_clone(state)   # blocks modify their input in place
            out = compute(state)
            change = tree_sub(out, before)
            self.base = change if self.base is None else tree_add(self._in_layout(index, to_stage), change)
            self.base_block = index
            if index == last:
                self._store(self.base)
            return out
        if index == action.blocks[0]:
            self.base, self.base_block = tree_clone(state), index   # the block may modify its input in place
        out = compute(state)
        if index == last:
            self._store(tree_sub(out, self._in_layout(index, to_stage)))
        return out

    def _reused_features(self) -> List[Any]:
        """Per chunk, what the reuse step continues from: the cache step's entry (a copy), or the
        forecast at this step's sigma from that entry and the anchors before it (forecast.py)."""
        if self.action.forecast == COPY:
            return [e.features for e in self.entries]
        forecast = self.action.forecast
        coordinate, domain = forecast.coordinates(self.run.timeline.sigmas)
        out = []
        for anchors in self.anchors:
            w = weights([coordinate[a.step] for a in anchors], coordinate[self.step], forecast, domain)
            out.append(combine([a.features for a in anchors], w))
        return out

    def _watched(self, index: int, state: Any, compute: Callable[[Any], Any],
                 to_stage: Optional[Callable[[Any], Any]]) -> Any:
        """A block the measuring policy watches: its run sees what the block took and gave."""
        run = self.run
        seen = run.policy.watch(index, state)
        out = compute(state)
        with run._lock:
            seen(self.step, self.evaluation, out, to_stage)
        return out

    def _in_layout(self, index: int, to_stage: Optional[Callable[[Any], Any]]) -> Any:
        """self.base in block `index`'s layout (two-stage models: first-stage streams joined)."""
        spec = self.run.spec
        if to_stage is not None and spec.stage(self.base_block) != spec.stage(index):
            return to_stage(self.base)
        return self.base

    def _resolve(self, block_input: Any) -> None:
        """The first hooked block of a forward: decide the step (once per step: a parallel forward of the
        same step waits on the lock and takes that decision), then confirm a planned reuse against the
        cache or fall back to computing and caching. Called under the run's lock."""
        run = self.run
        self.resolved = True
        step, record = self.step, self.record
        action = run.decisions.get(step)
        if action is None:
            action = run.policy.decide(Observation(step, run.timeline, self.x, self.context, block_input, run.record))
            problem = check_action(action, run.spec.hooked_blocks, step, run.spec.policy)
            if problem:
                raise RuntimeError(problem)   # a policy bug, never user input
            if run.guidance.active and action.kind is StepKind.REUSE:
                action = FULL   # a guidance extra over skipped blocks is running: see guidance.py
                run.note(GuidanceGuard.NOTE)
            run.decisions[step] = action
            record.planned, record.mode = action.kind.value, action.mode
            record.blocks = [action.blocks.start, action.blocks.stop] if action.kind is not StepKind.FULL else None
        if action.kind is StepKind.FULL:
            return
        chunks = self.chunks(block_input)
        if len(chunks) != len(self.keys):   # rows do not split evenly: cache the forward as a whole
            self.keys = [tuple(self.keys)]
        self.signatures = [tree_signature(c) for c in chunks]
        if action.kind is StepKind.REUSE:
            entries = [run.cache.usable(key, sig, action.blocks, action.source, step, action.mode)
                       for key, sig in zip(self.keys, self.signatures)]
            if all(e is not None for e in entries):
                self.action, self.entries = action, entries
                record.reused_calls += 1
                if action.forecast != COPY:
                    self.anchors = [run.cache.anchors_for(key, e, action.forecast.anchors)
                                    for key, e in zip(self.keys, entries)]
                    fewest = min(len(a) for a in self.anchors)
                    record.forecast = action.forecast.label if fewest > 1 else "copy"
                return
            record.fallback_calls += 1   # nothing usable cached for this forward: compute and cache now
        self.action = cache_step(action.blocks, action.mode)

    def _store(self, features: Any) -> None:
        """Keep the range's result per chunk. A later evaluation at the same step replaces an entry
        (Heun's corrector for step k-1 runs at step k's sigma before step k's own forward); within one
        evaluation the first forward wins (guidance extras such as SLG follow the main forward)."""
        run, action = self.run, self.action
        self.base = None
        stored = False
        with run._lock:
            for key, chunk, signature in zip(self.keys, self.chunks(features), self.signatures):
                entry = run.cache.entry(key)
                if entry is not None and entry.step == self.step and run.stored_in.get(key) == self.evaluation:
                    continue
                run.cache.store(key, chunk, self.step, action.blocks, action.mode, signature)
                run.stored_in[key] = self.evaluation
                self.stored_keys.append(key)
                stored = True
            if stored:
                self.record.cached_calls += 1

    def chunks(self, state: Any) -> List[Any]:
        """`state` split into this forward's conditioning chunks (whole when rows do not split evenly)."""
        leaves = tree_leaves(state)
        n, dim = len(self.keys), self.run.spec.batch_dim
        if n > 1 and all(t.shape[dim] % n == 0 for t in leaves):
            return tree_chunk(state, n, dim)
        return [state]


class SideResults:
    """Per forward: results of side branches that run inside the skipped range (Wan VACE), kept on a
    cache forward and attached to its cache entries when the forward ends, replayed on reuse forwards."""

    def __init__(self):
        self.pending: dict = {}
        self.seen: Dict[str, int] = {}

    def name(self, prefix: str) -> str:
        """A name for the n-th result of a side branch in this forward (e.g. one per VACE context)."""
        n = self.seen.get(prefix, 0)
        self.seen[prefix] = n + 1
        return f"{prefix}:{n}"


class SideReplay:
    """What a side branch (nodes/vace.py) asks of the forward in flight on its thread."""

    def __init__(self, run: "SamplingRun"):
        self.run = run

    @property
    def kind(self) -> Optional[StepKind]:
        """What the forward in flight does once it is resolved; None outside a forward or before."""
        call = self.run.call
        return call.action.kind if call is not None and call.resolved else None

    @property
    def blocks(self) -> range:
        return self.run.call.action.blocks

    def name(self, prefix: str) -> str:
        return self.run.call.sides.name(prefix)

    def keep(self, name: str, value: Any) -> None:
        """On a cache forward, keep the result of a side branch that runs inside the skipped range so
        that reuse forwards can replay it instead of computing it."""
        if self.kind is StepKind.CACHE:
            self.run.call.sides.pending[name] = value

    def can_replay(self, name: str) -> bool:
        return self.kind is StepKind.REUSE and all(name in e.side for e in self.run.call.entries)

    def replay(self, name: str) -> Any:
        """On a reuse forward, the side result kept at the cache step (batch rows in call order)."""
        return tree_cat([e.side[name] for e in self.run.call.entries], dim=self.run.spec.batch_dim)


class SamplingRun:
    def __init__(self, spec: PatchSpec, timeline: Timeline):
        self.spec = spec
        self.timeline = timeline
        self.clock = StepClock(timeline.sigmas)
        self.policy = spec.policy.start(timeline, spec.num_blocks)
        self.observes = self.policy.observes   # blocks a measuring policy watches (empty otherwise)
        self.cache = FeatureCache(anchors=spec.policy.anchors(spec.num_blocks))
        self.record = RunRecord(timeline.num_steps, spec.num_blocks,
                                [StepRecord(k, timeline.sigmas[k], timeline.positions[k]) for k in range(timeline.num_steps)])
        self.decisions: Dict[int, StepAction] = {}
        self.stored_in: Dict[Hashable, int] = {}   # key -> evaluation that made its entry
        self.evaluation = 0
        self._calls: Dict[int, Forward] = {}   # thread id -> the forward that thread has in flight
        self._lock = threading.RLock()      # guards everything above against parallel forwards
        self.scratch: dict = {}   # per-run helpers of the host adapter (e.g. block proxies)
        self.guidance = GuidanceGuard()
        self.side = SideReplay(self)
        self.finished = False

    def __deepcopy__(self, memo):  # a copy of a run's options still belongs to that run
        return self

    @property
    def call(self) -> Optional[Forward]:
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
        """Return the run's record (with the policy run's result) and drop every tensor the run held."""
        with self._lock:
            record = self.record
            record.cache_peak_bytes = self.cache.peak_bytes
            if self.policy is not None:
                record.extra.update(self.policy.summary())
                record.result = self.policy.result()
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
            call = Forward(self, step, list(keys) or [None], record, self.evaluation, x, context, residuals)
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
            for name, value in call.sides.pending.items():
                for key, chunk in zip(call.keys, call.chunks(value)):
                    if key in call.stored_keys:
                        self.cache.attach_side(key, name, chunk)
            call.record.cache_bytes = self.cache.nbytes()

    def _displace(self, call: Forward, why: str) -> None:
        with self._lock:
            call.displaced = call.resolved = True
            call.action = FULL
            call.record.displaced_calls += 1
            self.note(f"{why}; such forwards ran in full")

    # --------------------------------------------------------------- block scope
    def role(self, index: int) -> Role:
        """What hooked block `index` does in the forward in flight on this thread (RUN outside a
        forward); side-effect free, so a hook asks it once and acts on the answer."""
        call = self.call
        return Role.RUN if call is None else call.role(index)

    def run_block(self, index: int, state: Any, compute: Callable[[Any], Any],
                  to_stage: Optional[Callable[[Any], Any]] = None) -> Any:
        """Run, skip or replace hooked block `index` for the forward in flight.

        state:    the block's hidden-state input (tensor, dict of streams or tuple)
        compute:  runs the real block on a state and returns its output state
        to_stage: delta across stages: turns a state of the first stage into this block's layout
                  (e.g. Flux single blocks see cat(txt, img))
        """
        call = self.call
        if call is None:
            return compute(state)
        return call.run_block(index, state, compute, to_stage)
