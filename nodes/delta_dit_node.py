"""The "BlockDance Delta-DiT" node: MODEL -> MODEL with Delta-DiT's stage-adaptive block reuse.

A companion to BlockDance Patch rather than more inputs on it: its rule (rear range early, front range
late) has settings of its own that would sit unused beside the Patch node's depth."""
from __future__ import annotations

from comfy_api.latest import io

from ..blockdance_core import MODES, BlockDanceConfigError
from ..blockdance_core.config import check_group_size
from ..blockdance_core.stage_policy import StageAdaptivePolicy
from .patcher import apply_blockdance
from .types import node_id_of, patched_model_fields, schema

PAPER = StageAdaptivePolicy()   # the defaults are the paper's (PixArt-alpha, 20 steps)


def _size_input(name: str, default: float, when: str, counted_from: str) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.01, max=1.0, step=0.01, tooltip=(
        f"{when}: the fraction of the block stack, counted from its {counted_from}, skipped on a reuse step, "
        "in (0, 1]. The paper: 0.75 (21 of PixArt's 28 blocks)."))


class BlockDanceDeltaDiT(io.ComfyNode):
    """Delta-DiT's stage-adaptive reuse (Chen et al. 2024): early in sampling the rear blocks (detail,
    not formed yet) are skipped on reuse steps, after the boundary the front blocks (outline, settled by
    then). Each reuse step adds the change the skipped blocks made at their group's cache step to their
    current input (Delta-Cache). Defaults are the paper's: boundary 0.6 (step 12 of 20), N=2, 0.75 of
    the blocks; about 1.6x on the block stack. The paper's clearest gain over other caches is on 4-step
    consistency models at a mild 1.12x; on the pack's two reference models it was no closer than
    front-only reuse at the same compute, so compare it with BlockDance Patch and with fewer steps. It
    patches a copy of the model: use it instead of BlockDance Patch."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema("BlockDanceDeltaDiT", "BlockDance Delta-DiT", cls,
            inputs=[
                io.Model.Input("model", tooltip="The diffusion transformer to speed up."),
                io.Float.Input("boundary", default=PAPER.boundary, min=0.0, max=1.0, step=0.01, tooltip=(
                    "The point of the sampling timeline (0 = first step, 1 = end, as ComfyUI's start_percent) where "
                    "reuse moves from the rear blocks to the front blocks. 0 = front only, 1 = rear only. The paper: "
                    "0.6 (step 12 of 20).")),
                _size_input("rear_size", PAPER.rear_size, "Before the boundary", "end"),
                _size_input("front_size", PAPER.front_size, "From the boundary on", "start"),
                io.Int.Input("N", default=PAPER.N, min=1, max=100, tooltip=(
                    "Group size: one full (cache) step, then N-1 reuse steps. N=1 turns reuse off and reproduces the "
                    "unpatched model exactly. The paper: 2.")),
                io.Float.Input("start_percent", default=PAPER.start_percent, min=0.0, max=1.0, step=0.01, tooltip=(
                    "Reuse starts at this point of the sampling timeline; steps before it are computed in full. The "
                    "paper reuses from the start (0).")),
                io.Float.Input("end_percent", default=PAPER.end_percent, min=0.0, max=1.0, step=0.01, tooltip=(
                    "Reuse stops at this point of the sampling timeline; steps from it on are computed in full. The "
                    "paper reuses to the end (1).")),
                io.Combo.Input("mode", options=list(MODES), default=PAPER.mode, tooltip=(
                    "delta (the paper's Delta-Cache): add the change the skipped blocks made at the cache step to "
                    "their current input, so this step's latent still flows through. blockdance: reuse their cached "
                    "output as is.")),
            ],
            **patched_model_fields(),
        )

    @classmethod
    def validate_inputs(cls, boundary=None, rear_size=None, front_size=None, N=None, start_percent=None,
                        end_percent=None) -> bool | str:
        """Named inputs only (no **kwargs, so core keeps its checks on the others); core skips its own
        min/max for these, so their whole range is checked here. None = linked: checked when it runs."""
        given = dict(boundary=boundary, rear_size=rear_size, front_size=front_size, N=N,
                     start_percent=start_percent, end_percent=end_percent)
        # a linked input is stood in for by a value that never makes a given one wrong
        standins = dict(boundary=0.5, rear_size=0.5, front_size=0.5, N=1, start_percent=0.0, end_percent=1.0)
        try:
            if N is not None:
                check_group_size(N)
            StageAdaptivePolicy(**{k: standins[k] if v is None else v for k, v in given.items()})
        except BlockDanceConfigError as err:
            return str(err)
        return True

    @classmethod
    def execute(cls, model, boundary, rear_size, front_size, N, start_percent, end_percent, mode) -> io.NodeOutput:
        node_id = node_id_of(cls)
        policy = StageAdaptivePolicy(boundary=boundary, rear_size=rear_size, front_size=front_size, N=N,
                                     start_percent=start_percent, end_percent=end_percent, mode=mode)
        return io.NodeOutput(apply_blockdance(model, policy, mode, node_id=node_id))
