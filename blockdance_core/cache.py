"""Per-conditioning store of what a cache step kept for its reuse steps.

One entry per conditioning chunk (cond, uncond, each area or extra cond), so features never mix
whether ComfyUI batches the chunks into one call or splits them into several. An entry remembers the
step that made it, the block range and the form it was kept in, and the layout of the input it was
made from: a reuse step takes only an entry of its own group, for its own range, made from an input of
the same shape, dtype and device (a second KSampler at another resolution starts clean).

A forecasting reuse step reads more than its cache step's entry: the entries of the computed steps
before it (anchors). The store keeps, per chunk, the last `anchors` entries it made (1: only the
latest, which is all a copy needs), and `anchors_for` returns those that match the entry a reuse step
takes. The store belongs to one sampling run, so anchors never cross runs, models or samplers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, List, Optional

from .tree import tree_clone, tree_nbytes


@dataclass
class CacheEntry:
    features: Any           # the range's output (form "blockdance") or its blocks' own change (form "delta")
    step: int               # the step that made it
    blocks: range
    form: str
    input_signature: tuple  # tree_signature of that chunk's input at the decision point
    # Results of side branches interleaved with the skipped blocks (e.g. Wan VACE), by name.
    side: Dict[str, Any] = field(default_factory=dict)


class FeatureCache:
    def __init__(self, anchors: int = 1):
        if anchors < 1:
            raise ValueError(f"a feature cache keeps at least one entry per chunk, not {anchors}")
        self.anchors = anchors
        self._entries: Dict[Hashable, CacheEntry] = {}
        self._older: Dict[Hashable, List[CacheEntry]] = {}   # earlier entries kept as anchors, oldest first
        self.peak_bytes = 0

    def store(self, key: Hashable, features: Any, step: int, blocks: range, form: str, input_signature: tuple) -> None:
        """Keep a private copy (the caller's tensors are modified in place later in the forward); a later
        forward of the same step replaces an earlier one (Heun's corrector runs before the step's own).
        The entry it replaces from an earlier step stays as an anchor while `anchors` allows."""
        previous = self._entries.pop(key, None)
        if previous is not None and previous.step != step and self.anchors > 1:
            older = self._older.setdefault(key, [])
            previous.side = {}   # side results are replayed from the latest entry only
            older.append(previous)
            del older[:-(self.anchors - 1)]
        self._entries[key] = CacheEntry(tree_clone(features), step, blocks, form, input_signature)
        self.peak_bytes = max(self.peak_bytes, self.nbytes())

    def anchors_for(self, key: Hashable, entry: CacheEntry, count: int) -> List[CacheEntry]:
        """Up to `count` entries of this chunk ending with `entry`, oldest first: the earlier ones made
        for the same range, in the same form, from an input of the same layout (what a forecast reads)."""
        same = [e for e in self._older.get(key, ())
                if e.blocks == entry.blocks and e.form == entry.form
                and e.input_signature == entry.input_signature and e.step < entry.step]
        return (same + [entry])[-count:] if count > 1 else [entry]

    def usable(self, key: Hashable, input_signature: tuple, blocks: range, made_from: int, made_before: int,
               form: str) -> Optional[CacheEntry]:
        """The entry for key if a reuse step may take it: made at a step in [made_from, made_before), for
        `blocks`, in `form`, from an input of the same layout; else None."""
        entry = self._entries.get(key)
        if (entry is None or entry.input_signature != input_signature or entry.blocks != blocks
                or entry.form != form or not (made_from <= entry.step < made_before)):
            return None
        return entry

    def attach_side(self, key: Hashable, name: str, value: Any) -> None:
        self._entries[key].side[name] = tree_clone(value)
        self.peak_bytes = max(self.peak_bytes, self.nbytes())

    def entry(self, key: Hashable) -> Optional[CacheEntry]:
        return self._entries.get(key)

    def keys(self):
        return list(self._entries)

    def nbytes(self) -> int:
        kept = list(self._entries.values()) + [e for older in self._older.values() for e in older]
        return sum(tree_nbytes(e.features) + sum(tree_nbytes(v) for v in e.side.values()) for e in kept)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every tensor (the run is over); keep the peak for the record."""
        self._entries.clear()
        self._older.clear()
