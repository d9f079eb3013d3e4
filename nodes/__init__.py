"""ComfyUI-facing side of the pack: V3 nodes, family adapters and the hooks into sampling."""
from comfy_api.latest import ComfyExtension, io

from . import paths
from . import routes  # noqa: F401  (adds GET /blockdance/plan to a running ComfyUI server)
from . import ada_training, calibration, families, patcher, telemetry  # noqa: F401 (tools import them)
from .patch_node import BlockDancePatch
from .delta_dit_node import BlockDanceDeltaDiT
from .ada_nodes import BlockDanceAdaLoader, BlockDanceAdaTrain
from .schedule_nodes import BlockDanceCalibrate, BlockDanceScheduleLoader
from .amortised_nodes import BlockDanceAmortisedSchedule, BlockDanceAmortisedTrain

paths.register()
NODES = [BlockDancePatch, BlockDanceCalibrate, BlockDanceScheduleLoader, BlockDanceAdaLoader, BlockDanceAdaTrain,
         BlockDanceDeltaDiT, BlockDanceAmortisedTrain, BlockDanceAmortisedSchedule]


class BlockDanceExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


def comfy_entrypoint() -> BlockDanceExtension:
    return BlockDanceExtension()


__all__ = ["NODES", "BlockDanceExtension", "comfy_entrypoint"]
