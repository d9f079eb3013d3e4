"""The "BlockDance Patch" node: MODEL -> MODEL with block-feature reuse across steps."""
from __future__ import annotations

from comfy_api.latest import io

from ..blockdance_core import DEFAULTS, MODES, BlockDanceConfig, BlockDanceConfigError, GroupPolicy
from ..blockdance_core.config import check_depth, check_group_size
from ..blockdance_core.schedule import SchedulePolicy
from .patcher import apply_blockdance
from .types import Policy, Schedule, description, node_id_of, patched_model_fields, schema

MODEL_NAMES = ("Flux.1, Flux.2, Chroma, SD3 / SD3.5, Wan 2.1 / 2.2 (incl. VACE), HunyuanVideo 1.0 / 1.5, "
               "HunyuanImage 2.1, LTXV / LTX-2, Qwen-Image, AuraFlow, Mochi, PixArt-alpha / -sigma, HiDream, "
               "Lumina 2 / Z-Image, Cosmos Predict2")


FORECAST_CHOICES = ("copy", "taylor1", "taylor2")   # the patch's own; a schedule may carry others


class BlockDancePatch(io.ComfyNode):
    """Speeds up DiT sampling by reusing block features across steps (BlockDance, CVPR 2025). On a cache
    step the whole model runs and the output of the block at `depth` is kept; on the next N-1 steps the
    blocks up to it are skipped and only the deeper blocks run."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema("BlockDancePatch", "BlockDance Patch",
            description=f"{description(cls)} Supported: {MODEL_NAMES}.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion transformer to speed up."),
                io.Combo.Input("mode", options=list(MODES), default=DEFAULTS["mode"], tooltip=(
                    "blockdance: reuse the cached block output as is. delta: reuse the change the skipped blocks "
                    "made (F_i - F_0) on top of the current step's input, so the current latent still flows "
                    "through (Delta-DiT).")),
                io.Float.Input("depth", default=DEFAULTS["depth"], min=0.0, max=1.0, step=0.01, tooltip=(
                    "Fraction of the block stack skipped on a reuse step, in (0, 1]. Higher = faster and less faithful. "
                    "0.75 is the paper's setting (21 of PixArt's 28 blocks).")),
                io.Int.Input("N", default=DEFAULTS["N"], min=1, max=100, tooltip=(
                    "Group size: one full (cache) step, then N-1 reuse steps. N=1 turns reuse off and "
                    "reproduces the unpatched model exactly.")),
                io.Float.Input("start_percent", default=DEFAULTS["start_percent"], min=0.0, max=1.0, step=0.01,
                               tooltip=("Reuse starts at this point of the sampling timeline (0 = first step, 1 = "
                                        "end), as ComfyUI's own start_percent. Earlier steps form the layout and "
                                        "are always computed in full.")),
                io.Float.Input("end_percent", default=DEFAULTS["end_percent"], min=0.0, max=1.0, step=0.01,
                               tooltip=("Reuse stops at this point of the sampling timeline; the last steps "
                                        "refine detail and are always computed in full.")),
                Schedule.Input("schedule", optional=True, tooltip=(
                    "A measured schedule (BlockDance Calibrate or Load Schedule). When connected it decides which "
                    "steps reuse, at which depth and in which mode: mode, depth, N and the window are ignored.")),
                Policy.Input("policy", optional=True, tooltip=(
                    "A BlockDance-Ada policy (BlockDance Ada Loader / Train). The paper's policy decides at step rho, "
                    "for this latent and prompt, which remaining steps reuse, replacing the schedule and the settings "
                    "above. A closed-loop policy needs a schedule: it follows it and corrects it step by step, "
                    "spending exactly the schedule's budget.")),
                io.Float.Input("target_speedup", default=2.0, min=1.0, max=10.0, step=0.05, optional=True, tooltip=(
                    "With the paper's Ada policy: the compute budget it aims for (ideal speedup of the block stack). "
                    "A closed-loop policy keeps its schedule's budget.")),
                io.Combo.Input("forecast", options=list(FORECAST_CHOICES), default="copy", optional=True, tooltip=(
                    "What a reuse step continues from. copy: the cached features as they are (BlockDance). "
                    "taylor1: a straight-line extrapolation (over sigma) from the last two computed steps, "
                    "taylor2: a curve through the last three (TaylorSeer-style). Forecasting helps at high "
                    "speedups (long gaps between computed steps, e.g. N >= 3 or depth near 1); at N = 2 and "
                    "moderate depth copy is usually as close, and a forecast keeps one more cached tensor per "
                    "extra step. A connected schedule decides this itself.")),
            ],
            **patched_model_fields(),
        )

    @classmethod
    def validate_inputs(cls, depth=None, N=None, start_percent=None, end_percent=None,
                        forecast=None) -> bool | str:
        """Named inputs only (no **kwargs, so core keeps its checks on the others); core skips its own
        min/max for these four, so their whole range is checked here. None = linked: checked when it runs."""
        try:
            if depth is not None:
                check_depth(depth)
            if forecast is not None and forecast not in FORECAST_CHOICES:
                raise BlockDanceConfigError(f"forecast={forecast!r}; allowed: {', '.join(FORECAST_CHOICES)}")
            if N is not None:
                check_group_size(N)
            if start_percent is not None and end_percent is not None:
                BlockDanceConfig(start_percent=start_percent, end_percent=end_percent)
            else:
                for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
                    if value is not None and not 0.0 <= float(value) <= 1.0:
                        raise BlockDanceConfigError(f"{name}={value!r} must lie in [0, 1]")
        except BlockDanceConfigError as err:
            return str(err)
        return True

    @classmethod
    def execute(cls, model, mode, depth, N, start_percent, end_percent, schedule=None, policy=None,
                target_speedup=2.0, forecast="copy") -> io.NodeOutput:
        node_id = node_id_of(cls)
        if policy is not None:   # the policy socket: an Ada policy, asked through its step policy
            step_policy = policy.step_policy(target_speedup, schedule)
            mode = policy.mode(step_policy)
        elif schedule is not None:
            step_policy, mode = SchedulePolicy(schedule), "/".join(schedule.modes) or "none"
        else:
            step_policy = GroupPolicy(BlockDanceConfig(mode=mode, depth=depth, N=N, start_percent=start_percent,
                                                       end_percent=end_percent, forecast=forecast))
        return io.NodeOutput(apply_blockdance(model, step_policy, mode, node_id=node_id))


