"""BlockDance Amortised Train (probe a few sampling settings once) and BlockDance Amortised Schedule
(a schedule for any other setting, with no run of its own); see nodes/amortised.py."""
from __future__ import annotations


import comfy.samplers
import comfy.utils
from comfy_api.latest import io, ui

from ..blockdance_core.amortised import Library
from . import paths
from .amortised import build, parse_settings, timeline_for
from .types import Schedule as ScheduleType, schema

LibraryType = io.Custom("BLOCKDANCE_AMORTISED")   # a library of measured reuse errors
EXTENSION = ".amortised.safetensors"
NO_LIBRARY = "none yet: make one with BlockDance Amortised Train"
DEFAULT_SETTINGS = "20 euler simple 3.5; 30 dpmpp_2m karras 5; 40 euler_ancestral normal 3.5; 15 uni_pc sgm_uniform 4"


class BlockDanceAmortisedTrain(io.ComfyNode):
    """Measures this model once on a few sampling settings (one uncached run each) and keeps where its
    block features are stable, so BlockDance Amortised Schedule can give any other steps / sampler /
    scheduler / cfg a schedule without calibrating it. Saves into models/blockdance."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema("BlockDanceAmortisedTrain", "BlockDance Amortised Train", cls, is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The diffusion transformer (before BlockDance Patch)."),
                io.Conditioning.Input("positive", tooltip="The prompt(s) to measure, as for a KSampler."),
                io.Conditioning.Input("negative", tooltip="The negative prompt, as for the KSampler."),
                io.Latent.Input("latent_image", tooltip="A batch measures several seeds at once."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, tooltip="Noise seed of the runs."),
                io.String.Input("settings", default=DEFAULT_SETTINGS, multiline=True, tooltip=(
                    "One `steps sampler scheduler cfg` per line or separated by ';'. Spread them over the step "
                    "counts, samplers (include an ancestral one if you use those) and cfg you use.")),
                io.String.Input("filename_prefix", default="blockdance_amortised", tooltip=(
                    f"Saved as models/blockdance/<prefix>_00001{EXTENSION}.")),
            ],
            outputs=[LibraryType.Output(display_name="library"),
                     io.String.Output(display_name="report", tooltip="What was measured; also shown on this node.")],
        )

    @classmethod
    def validate_inputs(cls, filename_prefix=None, settings=None) -> bool | str:
        problem = paths.prefix_problem(filename_prefix, EXTENSION, required=True)
        if not problem and settings is not None:
            try:
                parse_settings(settings)
            except ValueError as err:
                problem = str(err)
        return problem or True

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, settings, filename_prefix) -> io.NodeOutput:
        paths.check_prefix(filename_prefix, EXTENSION, required=True)
        chosen = parse_settings(settings)
        bar = comfy.utils.ProgressBar(len(chosen))
        library = build(model, positive, negative, latent_image, seed, chosen,
                        progress=lambda i, name: bar.update_absolute(i, len(chosen)))
        path = paths.save_path(filename_prefix, EXTENSION)
        library.save(path)
        report = (f"BlockDance amortised library: {len(library.entries)} settings measured in "
                  f"{library.training['seconds']:.0f} s; reuse skips {library.cut}/{library.num_blocks} blocks "
                  f"({library.mode}); cfg bandwidth {library.cfg_bandwidth:g}; saved {path}")
        return io.NodeOutput(library, report, ui=ui.PreviewText(report))


class BlockDanceAmortisedSchedule(io.ComfyNode):
    """A schedule for these sampling settings from an amortised library (BlockDance Amortised Train),
    with no calibration run: the measured settings' reuse errors are read at this run's steps and the
    exact search picks the reuse steps for the target speed. Connect it to BlockDance Patch."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema("BlockDanceAmortisedSchedule", "BlockDance Amortised Schedule", cls, is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The model the library was measured on."),
                io.Combo.Input("library_name", options=paths.choices(EXTENSION, NO_LIBRARY), tooltip=(
                    f"A library in models/blockdance/ (*{EXTENSION}); refresh the page after training.")),
                io.Int.Input("steps", default=20, min=2, max=10000, tooltip="Steps, as the KSampler it is used with."),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance, as the KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, tooltip="The KSampler's sampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, tooltip="The KSampler's scheduler."),
                io.Float.Input("target_speedup", default=2.0, min=1.0, max=10.0, step=0.05, tooltip=(
                    "Ideal speedup of the block stack the schedule must reach (skipped block executions).")),
                LibraryType.Input("library", optional=True, tooltip="A library straight from Amortised Train "
                                                                    "(replaces library_name)."),
            ],
            outputs=[ScheduleType.Output(display_name="schedule", tooltip="Connect to BlockDance Patch's schedule input."),
                     io.String.Output(display_name="report")],
        )

    @classmethod
    def validate_inputs(cls, library_name=None) -> bool | str:   # named: core's combo check is replaced here
        if library_name == NO_LIBRARY:
            return True   # a linked library may replace it; execute says so when neither is there
        return paths.choice_problem(library_name, EXTENSION, "amortised library") or True

    @classmethod
    def execute(cls, model, library_name, steps, cfg, sampler_name, scheduler, target_speedup,
                library=None) -> io.NodeOutput:
        if library is None:
            if library_name == NO_LIBRARY:
                raise ValueError(f"no amortised library: {NO_LIBRARY}")
            library = Library.load(paths.full_path(library_name))
        timeline = timeline_for(model, steps, sampler_name, scheduler)
        name = f"amortised-{target_speedup:g}x"
        schedule = library.schedule(timeline, target_speedup, sampler_name, cfg, name,
                                    {"steps": steps, "scheduler": scheduler})
        report = (f"BlockDance amortised schedule for {steps} steps of {sampler_name} / {scheduler}, cfg {cfg:g}: "
                  f"{schedule.predicted_speedup:.2f}x ideal, {len(schedule.reuse_steps)}/{steps} steps reuse "
                  f"(no calibration run)\n{schedule.describe()}")
        return io.NodeOutput(schedule, report, ui=ui.PreviewText(report))
