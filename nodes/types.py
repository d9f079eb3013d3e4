"""The pack's own socket types, declared once."""
from comfy_api.latest import io

Schedule = io.Custom("BLOCKDANCE_SCHEDULE")   # a measured per-step plan (BlockDance Calibrate / Load Schedule)
Policy = io.Custom("BLOCKDANCE_POLICY")       # a learned per-instance policy (BlockDance Ada Loader)

CATEGORY = "model_patches/blockdance"


def schema(node_id: str, display_name: str, **fields) -> io.Schema:
    """A BlockDance node's schema (every node of the pack sits in one category)."""
    return io.Schema(node_id=node_id, display_name=display_name, category=CATEGORY, **fields)


def sampling_inputs(made_for: str, model: str, positive: str, latent: str, seed: str, seed_control: bool) -> list:
    """The KSampler-like inputs of the nodes that sample on the user's behalf (Calibrate, Ada Train):
    the same names, ranges and defaults as KSampler's, so a user copies its settings across."""
    import comfy.samplers
    same = f"as the KSampler the {made_for} will be used with"
    return [
        io.Model.Input("model", tooltip=model),
        io.Conditioning.Input("positive", tooltip=positive),
        io.Conditioning.Input("negative", tooltip="The negative prompt, as for the KSampler."),
        io.Latent.Input("latent_image", tooltip=latent),
        io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, tooltip=seed,
                     **({"control_after_generate": True} if seed_control else {})),
        io.Int.Input("steps", default=20, min=2, max=10000, tooltip=f"Sampling steps, {same}."),
        io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip=f"Classifier-free guidance, {same}."),
        io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, tooltip=f"The sampler, {same}."),
        io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES,
                       tooltip=f"The scheduler, {same} (its timeline places the steps)."),
    ]
