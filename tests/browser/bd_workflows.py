"""Example workflows as API prompts, and the same prompts on tiny models.

`to_api` does what the frontend's graphToPrompt does for the node kinds the examples use (the browser
test checks the two agree on every example). `on_tiny_models` then swaps only what cannot run here:
  - model loaders -> UNETLoader of a tiny random-weight model of the same family;
  - text encoding (CLIPTextEncode and its CLIP loaders) -> conditioning saved for that family, read by
    ComfyUI's LoadTrainingDataset (text encoders are multi-GB);
  - VAE decode and what consumes the image -> SaveLatent (VAEs are large and family-specific);
  - empty-latent sizes -> a few latent pixels and one frame.
Everything else (BlockDance nodes and their settings, ModelSampling shifts, guidance, samplers,
schedulers, step counts, the chained Wan 2.2 samplers) runs as the workflow says.
"""
from __future__ import annotations

import copy

# Nodes whose frontend adds display widgets the server never sees (Preview as Text's text boxes): their
# leftover widget values are the frontend's own, not inputs.
DISPLAY_WIDGETS = {"PreviewAny"}
VIRTUAL = {"Note", "MarkdownNote"}          # frontend-only nodes: never sent to the server
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# A combo whose selected option brings inputs of its own (core >= 0.30: SaveVideo's format), sent as
# "<name>" plus "<name>.<input>" for the option's inputs, whose widget values follow the combo's.
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
LOADERS = {"UNETLoader", "CheckpointLoaderSimple"}
TEXT_LOADERS = {"CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader"}
TEXT_ENCODERS = {"CLIPTextEncode"}
DECODERS = {"VAEDecode", "VAEDecodeTiled"}
IMAGE_SINKS = {"SaveImage", "CreateVideo", "SaveVideo", "PreviewImage", "SaveAnimatedWEBP"}
LATENT_SIZES = {"EmptySD3LatentImage", "EmptyLatentImage", "EmptyHunyuanLatentVideo", "EmptyLTXVLatentVideo"}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO


def _opts(spec) -> dict:
    return spec[1] if len(spec) > 1 else {}


def _widget_values(node, name, spec, values, optional, prefix=""):
    """(prompt input name, value) for one widget input, taking its values off the front of `values`. An
    optional input the saved workflow has no value for left (a core that added it later, e.g. CreateVideo's
    bit_depth in 0.25, or SaveVideo's hidden legacy codec in 0.30) gets its default (a dynamic combo: its
    first option), as in the frontend; a missing required one is an error."""
    if values:
        value = values.pop(0)
        if _has_control(name, spec):
            values.pop(0)
    elif optional and "default" in _opts(spec):
        value = _opts(spec)["default"]
    elif optional and spec[0] == DYNAMIC_COMBO:
        value = _opts(spec)["options"][0]["key"]
    else:
        raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {prefix + name}")
    out = [(prefix + name, value)]
    if spec[0] == DYNAMIC_COMBO:
        (option,) = [o for o in _opts(spec)["options"] if o["key"] == value] or [None]
        if option is None:
            raise ValueError(f"node {node['id']} ({node['type']}): {prefix + name}={value!r} is none of its options")
        for group in ("required", "optional"):
            for sub, sub_spec in option["inputs"].get(group, {}).items():
                out += _widget_values(node, sub, sub_spec, values, group == "optional", f"{prefix}{name}.")
    return out


def _has_control(name: str, spec) -> bool:
    """Seed widgets get a control_after_generate value after them in widgets_values."""
    return bool(_opts(spec).get("control_after_generate", name in ("seed", "noise_seed")))


def to_api(workflow: dict, object_info: dict) -> dict:
    """A UI-format workflow as the prompt the frontend would queue."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} ({node['type']}) is muted or bypassed; examples keep every node on")
        if node["type"] not in object_info:
            raise ValueError(f"node {node['id']}: unknown node type {node['type']}")
        spec = object_info[node["type"]]["input"]
        ordered = [(name, input_spec, group == "optional") for group in ("required", "optional")
                   for name, input_spec in spec.get(group, {}).items()]
        values = list(node.get("widgets_values") or [])
        linked = {inp["name"]: links[inp["link"]] for inp in node.get("inputs", []) if inp.get("link") is not None}
        inputs = {}
        for name, input_spec, optional in ordered:
            if _is_widget(input_spec):
                inputs.update(_widget_values(node, name, input_spec, values, optional))
            if name in linked:
                _, origin, origin_slot, *_ = linked.pop(name)
                inputs[name] = [str(origin), origin_slot]
        if (values and node["type"] not in DISPLAY_WIDGETS) or linked:
            raise ValueError(f"node {node['id']} ({node['type']}): unused widget values {values} or links {list(linked)}")
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def _references(prompt: dict, node_id: str):
    for nid, node in prompt.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                yield nid, name


def on_tiny_models(prompt: dict, models: dict, cond_folder: str, size: int = 64, save_prefix: str = "latents/x") -> dict:
    """The prompt with model files, text encoding, decoding and latent sizes swapped as the module says.
    `models` maps each model file the workflow names to a tiny file of the same family."""
    prompt = copy.deepcopy(prompt)
    for nid, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind in LOADERS:
            name = inputs.get("unet_name", inputs.get("ckpt_name"))
            prompt[nid] = {"class_type": "UNETLoader", "inputs": {"unet_name": models[name], "weight_dtype": "default"}}
        elif kind in TEXT_ENCODERS:
            prompt[nid] = {"class_type": "LoadTrainingDataset", "inputs": {"folder_name": cond_folder}}
            for user, name in list(_references(prompt, nid)):
                prompt[user]["inputs"][name] = [nid, 1]          # its CONDITIONING output
        elif kind in DECODERS:
            prompt[nid] = {"class_type": "SaveLatent", "inputs": {"samples": inputs["samples"],
                                                                   "filename_prefix": f"{save_prefix}_{nid}"}}
        elif kind in LATENT_SIZES:
            inputs.update(width=size, height=size)
            if "length" in inputs:
                inputs["length"] = 1
    _prune(prompt)
    return prompt


def _prune(prompt: dict) -> None:
    """Drop what only fed the text encoders or consumed decoded images, until nothing dangles."""
    def drop(node) -> bool:
        sources = [prompt.get(v[0]) for v in node["inputs"].values() if isinstance(v, list) and len(v) == 2]
        if any(source is None for source in sources):
            return True                                   # fed by a dropped node
        if node["class_type"] in IMAGE_SINKS:
            return any(source["class_type"] == "SaveLatent" for source in sources)   # the decode was swapped
        return False

    while True:
        unused_loaders = [nid for nid, node in prompt.items()
                          if node["class_type"] in TEXT_LOADERS | {"VAELoader"} and not any(_references(prompt, nid))]
        gone = unused_loaders + [nid for nid, node in prompt.items() if drop(node)]
        if not gone:
            return
        for nid in set(gone):
            del prompt[nid]
