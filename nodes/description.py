"""What a BlockDance Patch node installed on a model: immutable, so every clone of the patched model
(ComfyUI deep-copies model_options on clone(), e.g. for a LoRA node placed after ours) shares it.
Everything that changes while sampling lives on the run object (blockdance_core.SamplingRun), made
per sampler run by the OUTER_SAMPLE wrapper and dropped when the run ends."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..blockdance_core import PatchSpec, RunRecord
from .families import Family

DESCRIPTION_KEY = "blockdance"   # model_options["transformer_options"][...]: the installed patch
RUN_KEY = "blockdance_run"       # the same dict, inside one sampler run only: its SamplingRun


@dataclass(frozen=True)
class PatchDescription:
    spec: PatchSpec
    family: Family
    mode: str                           # the mode the user chose, for the log line
    hook_keys: Tuple[tuple, ...]        # patches_replace["dit"] keys BlockDance installed, in block order
    node_id: Optional[str] = None
    residuals: Optional[str] = None     # what this model adds between blocks in every forward (Wan S2V, Animate)

    def __deepcopy__(self, memo):
        return self

    def log_line(self, record: RunRecord) -> str:
        extra = self.spec.policy.describe(self.spec.num_blocks)
        return record.log_line(self.family.name, self.mode, **extra)


def description_of(transformer_options) -> Optional[PatchDescription]:
    return transformer_options.get(DESCRIPTION_KEY) if transformer_options else None
