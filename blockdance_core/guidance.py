"""Guidance extras that replace a skipped block: keep their term free of the reuse error.

SkipLayerGuidance (and nodes like it) run an extra forward after the main one with a block replaced,
and add (cond - extra) x scale to the result. When the replaced block lies in the range a reuse step
skips, the extra forward must run in full (it is displaced), while the main forward reused: the
guidance term then carries the reuse error times the scale. So an evaluation where a forward
reused and another was displaced is done again with the step computed in full, and while such
extras keep coming (SLG's window), the following steps are computed in full from the start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class _Evaluation:
    reused_step: Optional[int] = None   # the step a forward of this evaluation reused at
    displaced: bool = False             # a forward of it carried another node's patch on a hooked block
    blocks_run: int = 0                 # at reused_step, in this evaluation
    blocks_skipped: int = 0
    reused_calls: int = 0


class GuidanceGuard:
    def __init__(self):
        self.active = False   # the previous evaluation had a displaced extra: compute reuse steps in full
        self.current = _Evaluation()

    def begin_evaluation(self) -> None:
        self.active = self.current.displaced
        self.current = _Evaluation()

    def saw_call(self, step: Optional[int], reused: bool, displaced: bool, blocks_run: int, blocks_skipped: int) -> None:
        e = self.current
        if step is None:
            return
        e.displaced = e.displaced or displaced
        if reused:
            e.reused_step, e.reused_calls = step, e.reused_calls + 1
        if step == e.reused_step or reused:
            e.blocks_run += blocks_run
            e.blocks_skipped += blocks_skipped

    def step_to_redo(self) -> Optional[int]:
        """The step whose evaluation must be done again in full, if this one mixed reuse and an extra."""
        e = self.current
        return e.reused_step if e.displaced and e.reused_step is not None else None

    NOTE = ("a guidance forward (e.g. SkipLayerGuidance) replaced a block inside the skipped range; the steps "
            "where it ran were computed in full so its term carries no reuse error (put its layer after the "
            "reuse range to keep the speedup)")
