"""BlockDance Calibrate (measure the user's model, search a schedule) and BlockDance Load Schedule."""
from __future__ import annotations

import os

import comfy.samplers
import comfy.utils
from comfy_api.latest import io, ui

from ..blockdance_core.schedule import Schedule
from . import paths
from .calibration import FORECAST_CHOICES, MODE_CHOICES, RANGE_CHOICES, Sampling, calibrate
from .types import FileCombo, FileLoader, Schedule as ScheduleType, sampling_inputs, schema


class BlockDanceCalibrate(io.ComfyNode):
    """Measures where this model's block features are stable under these sampling settings (one uncached
    run at the inputs of a KSampler), then picks the cache/reuse schedule with the least predicted error
    for the target speed. Connect the schedule to BlockDance Patch. Calibrate on a few seeds or prompts (a
    batch latent is measured as a whole) and use the schedule on others. The report also says whether
    simply lowering steps would be closer at the same cost."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema("BlockDanceCalibrate", "BlockDance Calibrate", cls, is_output_node=True,
            inputs=[
                *sampling_inputs("schedule", seed_control=True),
                io.Combo.Input("mode", options=list(MODE_CHOICES), default="auto", tooltip=(
                    "auto: choose blockdance or delta for each group of steps; or restrict to one.")),
                io.Float.Input("target_speedup", default=1.5, min=1.0, max=10.0, step=0.05, tooltip=(
                    "Ideal speedup of the block stack the schedule must reach (skipped block executions).")),
                io.String.Input("filename_prefix", default="", optional=True, tooltip=(
                    "If set, the schedule is saved as models/blockdance/<prefix>_00001.json for "
                    "BlockDance Load Schedule.")),
                io.Combo.Input("forecast", options=list(FORECAST_CHOICES), default="copy", optional=True, tooltip=(
                    "copy: reuse steps copy what their cache step kept. taylor1: the search may also let a "
                    "group extrapolate (a straight line over sigma through its cache step and the computed "
                    "step before it) where its measurement predicts that is closer; it pays at high target "
                    "speedups (about 3x and more) and changes little below 2x.")),
                io.Combo.Input("ranges", options=list(RANGE_CHOICES), default="front", optional=True, tooltip=(
                    "front: a group skips the first blocks (BlockDance). front and rear: a group may also skip "
                    "the last blocks in delta mode (Delta-DiT's rear ranges) where the measurement predicts "
                    "that is closer at the same compute; the search is slower.")),
            ],
            outputs=[
                ScheduleType.Output(display_name="schedule", tooltip="Connect to BlockDance Patch's schedule input."),
                io.Image.Output(display_name="heatmap", tooltip=(
                    "Steps (columns) x cut depth (rows, deepest on top): how much the features changed from "
                    "the previous step (legend below it); outlines mark the blocks each reuse step skips. "
                    "Connect a Preview Image to see it.")),
                io.String.Output(display_name="report", tooltip=(
                    "The schedule, its predicted error and a check against simply using fewer steps; also "
                    "shown on this node after a run.")),
            ],
        )

    @classmethod
    def validate_inputs(cls, filename_prefix=None, forecast=None, ranges=None) -> bool | str:   # named: core checks the rest
        if forecast is not None and forecast not in FORECAST_CHOICES:
            return f"forecast={forecast!r}; allowed: {', '.join(FORECAST_CHOICES)}"
        if ranges is not None and ranges not in RANGE_CHOICES:
            return f"ranges={ranges!r}; allowed: {', '.join(RANGE_CHOICES)}"
        return paths.prefix_problem(filename_prefix, ".json") or True

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, mode,
                target_speedup, filename_prefix="", forecast="copy", ranges="front") -> io.NodeOutput:
        paths.check_prefix(filename_prefix, ".json")   # before the measuring run, not after it
        sampling = Sampling(positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler)
        progress = comfy.utils.ProgressBar(3 * steps)
        name = os.path.basename(filename_prefix) if filename_prefix else f"calibrated-{target_speedup:g}x"
        result = calibrate(model, sampling, target_speedup, mode, name, on_step=lambda: progress.update(1),
                           forecast=forecast, ranges=ranges)
        progress.update_absolute(3 * steps)
        report = result.report
        if filename_prefix:
            path = paths.save_path(filename_prefix, ".json")
            result.schedule.save(path)
            report += f"\nsaved {path}"
        return io.NodeOutput(result.schedule, result.heatmap, report, ui=ui.PreviewText(report))


NO_SCHEDULE = "none yet: save one with BlockDance Calibrate"


class BlockDanceScheduleLoader(FileLoader):
    """A schedule saved by BlockDance Calibrate (models/blockdance/*.json)."""
    node_id, display_name = "BlockDanceScheduleLoader", "BlockDance Load Schedule"
    output, output_name = ScheduleType, "schedule"
    combo = FileCombo("schedule_name", ".json", "schedule", NO_SCHEDULE,
                      "Files in models/blockdance (and extra_model_paths.yaml's blockdance).")

    @classmethod
    def execute(cls, schedule_name) -> io.NodeOutput:
        return io.NodeOutput(Schedule.load(paths.full_path(schedule_name)))
