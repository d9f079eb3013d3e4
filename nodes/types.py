"""The pack's own socket types, declared once, and the parts the nodes' schemas share."""
import inspect
from typing import NamedTuple, Optional

from comfy_api.latest import io

from . import paths

Schedule = io.Custom("BLOCKDANCE_SCHEDULE")   # a measured per-step plan (BlockDance Calibrate / Load Schedule)
Policy = io.Custom("BLOCKDANCE_POLICY")       # an Ada policy (BlockDance Ada Loader / Train), not a StepPolicy

CATEGORY = "model_patches/blockdance"


def description(node: type) -> str:
    """What a node says it does, for the user: its class docstring, folded into one paragraph."""
    return " ".join(inspect.getdoc(node).split())


def schema(node_id: str, display_name: str, node: Optional[type] = None, **fields) -> io.Schema:
    """A BlockDance node's schema: every node of the pack sits in one category; its description is
    `fields`' own, else the class docstring of `node` (the node class itself)."""
    if node is not None:
        fields.setdefault("description", description(node))
    return io.Schema(node_id=node_id, display_name=display_name, category=CATEGORY, **fields)


# What the KSampler-like inputs say on the nodes that sample on the user's behalf, by what the node makes.
SAMPLING_TOOLTIPS = {
    "schedule": dict(model="The diffusion transformer to calibrate (before BlockDance Patch).",
                     positive="The prompt(s) to measure, as for the KSampler.",
                     latent="A batch measures several seeds at once.",
                     seed="Noise seed of the measuring run (a batch latent measures seed, seed+1, ...)."),
    "policy": dict(model="The diffusion transformer to train a policy for (before BlockDance Patch).",
                   positive="The prompt(s) to train on, as for a KSampler.",
                   latent="A batch: one training item per row.",
                   seed="Noise seed of the first row (row i uses seed + i); also seeds the training."),
}


def sampling_inputs(made_for: str, seed_control: bool) -> list:
    """The KSampler-like inputs of the nodes that sample on the user's behalf (Calibrate, Ada Train):
    the same names, ranges and defaults as KSampler's, so a user copies its settings across."""
    import comfy.samplers
    tips = SAMPLING_TOOLTIPS[made_for]
    same = f"as the KSampler the {made_for} will be used with"
    return [
        io.Model.Input("model", tooltip=tips["model"]),
        io.Conditioning.Input("positive", tooltip=tips["positive"]),
        io.Conditioning.Input("negative", tooltip="The negative prompt, as for the KSampler."),
        io.Latent.Input("latent_image", tooltip=tips["latent"]),
        io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, tooltip=tips["seed"],
                     **({"control_after_generate": True} if seed_control else {})),
        io.Int.Input("steps", default=20, min=2, max=10000, tooltip=f"Sampling steps, {same}."),
        io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip=f"Classifier-free guidance, {same}."),
        io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, tooltip=f"The sampler, {same}."),
        io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES,
                       tooltip=f"The scheduler, {same} (its timeline places the steps)."),
    ]


class FileCombo(NamedTuple):
    """A loader's one input: a combo of the files in models/blockdance/ with one extension."""
    name: str        # the input's name
    extension: str
    what: str        # what one file is called in messages
    empty: str       # the one entry an empty list shows
    tooltip: str


class FileLoader(io.ComfyNode):
    """A node that loads one file from models/blockdance/ (BlockDance Load Schedule, BlockDance Ada
    Loader). A loader names its node (`node_id`, `display_name`, its docstring as the description),
    its one input (`combo`: the input's name, the file extension, what a file is called in messages, the
    entry an empty list shows, the tooltip) and its output socket type (`output`, shown as `output_name`),
    and executes with the combo's value (the file's name; `paths.full_path` finds it).

    The combo is the only input, and validate_inputs checks it in full (the name is one of the files),
    so it may take **inputs: core skips its own checks for every input a validate_inputs names, which
    here is all there is. A loader with a second input must name its inputs instead."""
    node_id: str
    display_name: str
    combo: FileCombo
    output: io.Custom
    output_name: str

    @classmethod
    def define_schema(cls) -> io.Schema:
        combo = cls.combo
        files = io.Combo.Input(combo.name, options=paths.choices(combo.extension, combo.empty), tooltip=combo.tooltip)
        return schema(cls.node_id, cls.display_name, cls, inputs=[files],
                      outputs=[cls.output.Output(display_name=cls.output_name)])

    @classmethod
    def validate_inputs(cls, **inputs) -> bool | str:   # the one input, checked in full (see the docstring)
        combo = cls.combo
        return paths.choice_problem(inputs.get(combo.name), combo.extension, combo.what) or True


def patched_model_fields() -> dict:
    """The output and hidden input of a node that patches a copy of the model (Patch, Delta-DiT): the
    node id lets the run's report find its node."""
    return {"outputs": [io.Model.Output(tooltip="A patched copy of the model; the input model is left unchanged.")],
            "hidden": [io.Hidden.unique_id]}


def node_id_of(node_cls) -> "str | None":
    """The id of the node being executed (None when called outside a prompt, e.g. from a script)."""
    hidden = getattr(node_cls, "hidden", None)
    return hidden.unique_id if hidden is not None else None
