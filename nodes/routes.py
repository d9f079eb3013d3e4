"""The plan preview the web extension shows on BlockDance Patch before a run.

The browser never re-derives the plan: it sends the node's settings and the connected sampler's step
count to `GET /blockdance/plan` and draws what the core's own policy (`GroupPolicy.start(...).plan`)
answers. The sampler's scheduler and the model are unknown before a run, so the preview places the
steps evenly on the timeline (what ComfyUI's `simple` scheduler gives) and, unless the caller knows
the model's block count from an earlier run, uses a nominal stack; the reply says both. A schedule
saved by BlockDance Calibrate (`schedule_name`, as BlockDance Load Schedule names it) is planned by its
own policy at its own block count, so its varying depths show before a run too.

A value out of range is an error that names the input and the allowed range, never a clamp.

The route is open to any client of the server, so it is bounded: every request value has a range, a
schedule file is parsed once per file version (cached by path, size and modification time), and
the work runs on one worker thread off ComfyUI's event loop, with at most MAX_PENDING requests
waiting, so previews never hold up prompts, the websocket or /queue.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Optional

from ..blockdance_core import BlockDanceConfig, BlockDanceConfigError, GroupPolicy, StepKind, Timeline
from ..blockdance_core.schedule import Schedule, ScheduleError, SchedulePolicy
from . import paths

ROUTE = "/blockdance/plan"
NOMINAL_BLOCKS = 1000        # fine enough that depth 0.75 shows as 0.75 when the model is unknown
MAX_STEPS = 10000            # KSampler's own limit on steps
MAX_SCHEDULER_STEPS = 100000  # steps / denoise: the schedule KSampler would build for a partial denoise
MAX_PENDING = 8              # preview requests queued or running at once; more are told to retry
CACHED_SCHEDULES = 16
ASSUMPTION = "steps evenly spaced on the timeline (the simple scheduler); the run shows the real plan"


class PreviewError(ValueError):
    """A request value the user can fix; the message names the input and what is allowed."""


def _number(query: Mapping[str, str], name: str, kind, default=None, low=None, high=None):
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise PreviewError(f"{name} is missing")
        return default
    allowed = (f"an integer in [{low}, {high}]" if kind is int else f"a number in [{low}, {high}]")
    try:
        value = float(raw)
        if kind is int:
            if not value.is_integer():
                raise ValueError
            value = int(value)
    except (TypeError, ValueError):
        raise PreviewError(f"{name}={raw!r} must be {allowed}") from None
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise PreviewError(f"{name}={raw} is outside the allowed range: it must be {allowed}")
    return value


def step_positions(steps: int, denoise: float = 1.0, start_at_step: int = 0,
                   end_at_step: Optional[int] = None) -> list:
    """Timeline positions of the steps a sampler runs, as ComfyUI slices its schedule: KSampler's
    denoise < 1 keeps the last `steps` of int(steps / denoise); KSamplerAdvanced runs
    [start_at_step, end_at_step) of `steps`. Evenly spaced, as under the simple scheduler."""
    if denoise < 1.0:
        if denoise > 0 and steps / denoise > MAX_SCHEDULER_STEPS:
            raise PreviewError(f"denoise={denoise:g} with steps={steps} asks for a {steps / denoise:.3g}-step schedule; "
                               f"denoise must be 0 or at least steps / {MAX_SCHEDULER_STEPS}")
        total = int(steps / denoise) if denoise > 0 else 0
        return [(total - steps + k) / total for k in range(steps)] if total else []
    end = steps if end_at_step is None else min(end_at_step, steps)
    return [k / steps for k in range(start_at_step, end)]


def _config(query: Mapping[str, str]) -> BlockDanceConfig:
    try:
        return BlockDanceConfig(
            mode=query.get("mode", "blockdance"),
            depth=_number(query, "depth", float),
            N=_number(query, "N", int, low=1, high=100),
            start_percent=_number(query, "start_percent", float),
            end_percent=_number(query, "end_percent", float),
            forecast=query.get("forecast", "copy"))
    except BlockDanceConfigError as err:
        raise PreviewError(str(err)) from None


_schedules: "OrderedDict[tuple, Schedule]" = OrderedDict()
_schedules_lock = threading.Lock()


def _load_schedule(name: str) -> Schedule:
    """A schedule file parsed once per version of the file (path, size, modification time)."""
    try:
        path = paths.full_path(name)
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        with _schedules_lock:
            if key in _schedules:
                _schedules.move_to_end(key)
                return _schedules[key]
        schedule = Schedule.load(path)
        with _schedules_lock:
            _schedules[key] = schedule
            while len(_schedules) > CACHED_SCHEDULES:
                _schedules.popitem(last=False)
        return schedule
    except (FileNotFoundError, OSError):
        raise PreviewError(f"schedule_name={name!r} is not in models/{paths.FOLDER}/ (BlockDance Calibrate with a "
                           "filename_prefix saves one there)") from None
    except ScheduleError as err:
        raise PreviewError(f"schedule_name={name!r}: {err}") from None


def preview(query: Mapping[str, str]) -> dict:
    """The plan for one BlockDance Patch setting at one sampler's steps, in the shape of the run
    record's steps (`planned`, `blocks`, `depth`, `position`) so the browser draws both alike."""
    steps = _number(query, "steps", int, low=1, high=MAX_STEPS)
    denoise = _number(query, "denoise", float, default=1.0, low=0.0, high=1.0)
    start_at = _number(query, "start_at_step", int, default=0, low=0, high=MAX_STEPS)
    end_at = _number(query, "end_at_step", int, default=MAX_STEPS, low=0, high=MAX_STEPS)
    known_blocks = query.get("num_blocks") not in (None, "")
    num_blocks = _number(query, "num_blocks", int, default=NOMINAL_BLOCKS, low=1, high=100000)
    if query.get("schedule_name"):
        policy = SchedulePolicy(_load_schedule(query["schedule_name"]))
        num_blocks, known_blocks = policy.schedule.num_blocks, True
    else:
        policy = GroupPolicy(_config(query))

    positions = step_positions(steps, denoise, start_at, end_at)
    sigmas = [1.0 - p for p in positions] + [0.0]   # placeholders: the policies place steps by position
    plan = policy.start(Timeline(tuple(sigmas), tuple(positions)), num_blocks).plan if positions else []
    cells = []
    for k, (action, position) in enumerate(zip(plan, positions)):
        blocks = [action.blocks.start, action.blocks.stop] if action.kind is not StepKind.FULL else None
        cells.append({"step": k, "position": round(position, 6), "planned": action.kind.value, "blocks": blocks,
                      "mode": action.mode if blocks else "", "depth": round(action.skipped / num_blocks, 4)})
    total_blocks = num_blocks * len(plan)
    run_blocks = total_blocks - sum(a.skipped for a in plan)
    return {
        "num_steps": len(plan), "num_blocks": num_blocks if known_blocks else None, "steps": cells,
        "reused": sum(1 for a in plan if a.kind is StepKind.REUSE),
        "ideal_speedup": round(total_blocks / run_blocks, 4) if run_blocks else 1.0,
        "assumes": ASSUMPTION,
    }


def register() -> bool:
    """Add the route to ComfyUI's running server; False when there is none (the pack imported in
    process by tests or benchmarks). ComfyUI imports packs before it mounts `routes`."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or getattr(instance, "_blockdance_routes", False):
        return False
    from aiohttp import web

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blockdance-plan")
    pending = [0]

    @instance.routes.get(ROUTE)
    async def plan_route(request):
        if pending[0] >= MAX_PENDING:
            return web.json_response({"error": "too many plan previews at once; retry shortly"}, status=429,
                                     headers={"Retry-After": "1"})
        pending[0] += 1
        try:
            status, body = await asyncio.get_running_loop().run_in_executor(worker, answer, dict(request.rel_url.query))
        finally:
            pending[0] -= 1
        return web.Response(text=body, status=status, content_type="application/json")

    instance._blockdance_routes = True
    return True


def answer(query: Mapping[str, str]) -> tuple:
    """(HTTP status, JSON text) for one preview request; runs on the worker thread."""
    try:
        return 200, json.dumps(preview(query))
    except PreviewError as err:
        return 400, json.dumps({"error": str(err)})


register()
