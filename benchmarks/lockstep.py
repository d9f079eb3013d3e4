"""Step-interleaved timing of several sampler runs.

Why: on these shared CPUs a model step takes 60 ms one moment and 95 ms the next, as neighbours
come and go within a second. Runs timed one after another therefore meet different machines.
Here every run lives in its own thread and the runs take turns a sampler step at a time (the run
with the least progress through its schedule goes next), so all of them meet the same machine,
and each run's time is kept per step. Only one run computes at any moment; the whole process is
pinned to as many CPUs as torch uses, so the turns also share one core's caches and neighbours.

A runner is `run(callback) -> output`, where `callback(step, x0, x, total_steps)` is ComfyUI's
sampler callback signature. `on_resume` runs (untimed) whenever a runner gets its turn back; the
benchmark uses it to restore the one piece of ComfyUI state a sampler run assumes it owns.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple


@dataclass
class Runner:
    run: Callable[[Callable], Any]
    on_resume: Optional[Callable[[], None]] = None


@dataclass
class Timed:
    segments: List[float] = field(default_factory=list)  # per step; the first holds the set-up, the last the tear-down
    output: Any = None

    @property
    def seconds(self) -> float:
        return sum(self.segments)


def sampler_runner(patcher, sample, on_resume: Optional[Callable[[], None]] = None) -> Runner:
    """A runner for one ComfyUI sampler run: `sample(callback)` under inference mode. ComfyUI assumes
    one sampler run at a time (pre_run() points the shared model at the running patcher, cleanup()
    clears it), so each turn points it back at this run's patcher, after `on_resume`."""
    import torch

    def run(callback):
        with torch.inference_mode():
            return sample(callback)

    def resume():
        if on_resume is not None:
            on_resume()
        patcher.model.current_patcher = patcher

    return Runner(run, resume)


class LockstepAborted(RuntimeError):
    """Raised inside the other runners when one runner failed, so that all of them stop."""


@contextmanager
def pinned(num_cpus: int):
    """Pin this thread (and the threads it starts) to `num_cpus` of the CPUs it may use."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(allowed[-max(1, num_cpus):]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(allowed))


class _Turns:
    def __init__(self, runners: Sequence[Runner]):
        self.runners = list(runners)
        self.results = [Timed() for _ in self.runners]
        self.progress = [0.0] * len(self.runners)
        self.done = [False] * len(self.runners)
        self.wake = [threading.Event() for _ in self.runners]
        self.lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self.started_at = [0.0] * len(self.runners)

    def _hand_over(self) -> None:
        """Wake the live runner with the least progress (lowest index on ties); caller holds the lock."""
        live = [i for i, d in enumerate(self.done) if not d]
        if live:
            self.wake[min(live, key=lambda i: (self.progress[i], i))].set()

    def _wait_turn(self, me: int) -> None:
        self.wake[me].wait()
        self.wake[me].clear()
        if self.error is not None and not self.done[me]:
            raise LockstepAborted("another lockstep runner failed")
        hook = self.runners[me].on_resume
        if hook is not None:
            hook()
        self.started_at[me] = time.perf_counter()

    def _close_segment(self, me: int) -> None:
        self.results[me].segments.append(time.perf_counter() - self.started_at[me])

    def step_done(self, me: int, step: int, total_steps: int) -> None:
        self._close_segment(me)
        with self.lock:
            self.progress[me] = (step + 1) / max(1, total_steps)
            self._hand_over()
        self._wait_turn(me)

    def body(self, me: int) -> None:
        try:
            self._wait_turn(me)
            self.results[me].output = self.runners[me].run(
                lambda step, x0, x, total_steps: self.step_done(me, step, total_steps))
            self._close_segment(me)
        except BaseException as e:  # noqa: BLE001 - handed to the caller of run_lockstep
            with self.lock:
                if self.error is None:  # the first failure; the others are LockstepAborted
                    self.error = e
        finally:
            with self.lock:
                self.done[me] = True
                if self.error is not None:
                    for i, d in enumerate(self.done):  # let every waiting runner see the failure
                        if not d:
                            self.wake[i].set()
                else:
                    self._hand_over()


def run_lockstep(runners: Sequence[Runner], num_cpus: int = 1) -> List[Timed]:
    """Run `runners` a step at a time in turn; per-step seconds and the output of each."""
    turns = _Turns(runners)
    with pinned(num_cpus):
        threads = [threading.Thread(target=turns.body, args=(i,), daemon=True) for i in range(len(runners))]
        for t in threads:
            t.start()
        with turns.lock:
            turns._hand_over()
        for t in threads:
            t.join()
    if turns.error is not None:
        raise turns.error
    return turns.results


def clean_seconds(rounds: Sequence[Timed]) -> float:
    """A run's time without the contention: the sum over step positions of the fastest time that
    step took in any round. Every round does the same work at each position (deterministic
    sampling), and contention only ever slows a step down, so the minimum is the estimate that
    noise cannot inflate; it is `timeit`'s reasoning, applied per step."""
    lengths = {len(r.segments) for r in rounds}
    if len(lengths) != 1:
        raise ValueError(f"rounds took different numbers of steps: {sorted(lengths)}")
    return sum(min(seg) for seg in zip(*(r.segments for r in rounds)))


def reference_time(uncached_runs: Sequence[Sequence[Timed]]) -> Tuple[float, float]:
    """Mean clean time of several uncached copies timed in the same rounds, and their largest
    relative gap from it (the noise floor). One copy's luck would otherwise move every speedup."""
    times = [clean_seconds(rounds) for rounds in uncached_runs]
    mean = sum(times) / len(times)
    return mean, max(abs(t / mean - 1) for t in times)
