"""Per-conditioning store of cache-point features.

One entry per conditioning chunk (cond, uncond, each area or extra cond), so features never mix
whether ComfyUI batches the chunks into one call or splits them into several. An entry remembers
the signature of the block-0 input it was made from; a different shape, dtype or device (a
second KSampler at another resolution, a model moved to another device) makes it unusable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Optional

from .tree import tree_clone, tree_nbytes


@dataclass
class CacheEntry:
    features: Any          # F_i (blockdance) or F_i - F_in (delta), one chunk's batch rows
    sigma: float           # the step it was computed at
    input_signature: tuple  # tree_signature of that chunk's block-0 input
    # Results of side branches interleaved with the skipped blocks (e.g. Wan VACE), by name.
    side: Dict[str, Any] = field(default_factory=dict)


class FeatureCache:
    def __init__(self):
        self._entries: Dict[Hashable, CacheEntry] = {}
        self.peak_bytes = 0

    def store(self, key: Hashable, features: Any, sigma: float, input_signature: tuple) -> None:
        """Keep a private copy: the caller's tensors are modified in place later in the forward."""
        self._entries.pop(key, None)
        self._entries[key] = CacheEntry(tree_clone(features), float(sigma), input_signature)
        self.peak_bytes = max(self.peak_bytes, self.nbytes())

    def lookup(self, key: Hashable, input_signature: tuple) -> Optional[CacheEntry]:
        """The entry for key if it was made from an input of the same layout, else None."""
        entry = self._entries.get(key)
        if entry is None or entry.input_signature != input_signature:
            return None
        return entry

    def attach_side(self, key: Hashable, name: str, value: Any) -> None:
        self._entries[key].side[name] = tree_clone(value)
        self.peak_bytes = max(self.peak_bytes, self.nbytes())

    def has_at(self, key: Hashable, sigma: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.sigma == float(sigma)

    def nbytes(self) -> int:
        return sum(tree_nbytes(e.features) + sum(tree_nbytes(v) for v in e.side.values())
                   for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every tensor (the run is over or its layout changed); keep the peak for stats."""
        self._entries.clear()
