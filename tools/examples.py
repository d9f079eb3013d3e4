"""The example workflows in example_workflows/, written by code so every file has the same parts:
a titled group around the graph, a Note naming each model file and the folder it goes in (also
recorded as `properties.models` on the loader, which the frontend's missing-models dialog reads),
a view that opens with every node below the top bar, and valid links.

    python -m tools.examples        # rewrite example_workflows/*.json

(`tests/host/test_workflows.py` checks the committed files are what this writes; the .jpg thumbnails
are crops of each graph as the frontend draws it, written by the browser test
tests/host/test_workflows_browser.py with BLOCKDANCE_UPDATE_DOCS=1.) It also builds the tiny graphs
the browser test runs from the Run button.

Layouts hold in both renderers: nodes stacked in a column are spaced by `_spread` for the height a
node takes in Nodes 2.0 (taller than the classic canvas draws it), which the browser test measures.
"""
from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_DIR = os.path.join(ROOT, "example_workflows")

# Socket inputs (name, type, optional) and outputs (name, type) of the nodes the examples use; widget
# values follow ComfyUI's input order (checked against /object_info by the workflow test).
M, C, V, L, CO, I = "MODEL", "CLIP", "VAE", "LATENT", "CONDITIONING", "IMAGE"
S, P = "BLOCKDANCE_SCHEDULE", "BLOCKDANCE_POLICY"
SIGNATURES = {
    "UNETLoader": ([], [(M, M)]),
    "CheckpointLoaderSimple": ([], [(M, M), (C, C), (V, V)]),
    "CLIPLoader": ([], [(C, C)]),
    "DualCLIPLoader": ([], [(C, C)]),
    "VAELoader": ([], [(V, V)]),
    "CLIPTextEncode": ([("clip", C, False)], [(CO, CO)]),
    "ConditioningZeroOut": ([("conditioning", CO, False)], [(CO, CO)]),
    "FluxGuidance": ([("conditioning", CO, False)], [(CO, CO)]),
    "EmptySD3LatentImage": ([], [(L, L)]),
    "EmptyLatentImage": ([], [(L, L)]),
    "EmptyHunyuanLatentVideo": ([], [(L, L)]),
    "EmptyLTXVLatentVideo": ([], [(L, L)]),
    "ModelSamplingSD3": ([("model", M, False)], [(M, M)]),
    "ModelSamplingAuraFlow": ([("model", M, False)], [(M, M)]),
    "BlockDancePatch": ([("model", M, False), ("schedule", S, True), ("policy", P, True)], [(M, M)]),
    "BlockDanceCalibrate": ([("model", M, False), ("positive", CO, False), ("negative", CO, False),
                             ("latent_image", L, False)], [("schedule", S), ("heatmap", I), ("report", "STRING")]),
    "BlockDanceScheduleLoader": ([], [("schedule", S)]),
    "BlockDanceAdaTrain": ([("model", M, False), ("positive", CO, False), ("negative", CO, False),
                            ("latent_image", L, False)], [("policy", P), ("report", "STRING")]),
    "BlockDanceAdaLoader": ([], [("policy", P)]),
    "KSampler": ([("model", M, False), ("positive", CO, False), ("negative", CO, False), ("latent_image", L, False)],
                 [(L, L)]),
    "KSamplerAdvanced": ([("model", M, False), ("positive", CO, False), ("negative", CO, False),
                          ("latent_image", L, False)], [(L, L)]),
    "BasicGuider": ([("model", M, False), ("conditioning", CO, False)], [("GUIDER", "GUIDER")]),
    "BasicScheduler": ([("model", M, False)], [("SIGMAS", "SIGMAS")]),
    "KSamplerSelect": ([], [("SAMPLER", "SAMPLER")]),
    "RandomNoise": ([], [("NOISE", "NOISE")]),
    "SamplerCustomAdvanced": ([("noise", "NOISE", False), ("guider", "GUIDER", False), ("sampler", "SAMPLER", False),
                               ("sigmas", "SIGMAS", False), ("latent_image", L, False)],
                              [("output", L), ("denoised_output", L)]),
    "SamplerCustom": ([("model", M, False), ("positive", CO, False), ("negative", CO, False),
                       ("sampler", "SAMPLER", False), ("sigmas", "SIGMAS", False), ("latent_image", L, False)],
                      [("output", L), ("denoised_output", L)]),
    "LTXVConditioning": ([("positive", CO, False), ("negative", CO, False)], [("positive", CO), ("negative", CO)]),
    "LTXVScheduler": ([("latent", L, True)], [("SIGMAS", "SIGMAS")]),
    "VAEDecode": ([("samples", L, False), ("vae", V, False)], [(I, I)]),
    "VAEDecodeTiled": ([("samples", L, False), ("vae", V, False)], [(I, I)]),
    "SaveImage": ([("images", I, False)], []),
    "PreviewImage": ([("images", I, False)], []),
    "CreateVideo": ([("images", I, False), ("audio", "AUDIO", True)], [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO", False)], []),
    "LoadTrainingDataset": ([], [("latents", L), ("conditioning", CO)]),
    "SaveLatent": ([("samples", L, False)], []),
    "PreviewAny": ([("source", "*", False)], []),
    "Note": ([], []),
}
SIZES = {"UNETLoader": [315, 82], "CheckpointLoaderSimple": [315, 98], "CLIPLoader": [315, 106],
         "DualCLIPLoader": [315, 130], "VAELoader": [315, 58], "CLIPTextEncode": [400, 160],
         "ConditioningZeroOut": [240, 26], "FluxGuidance": [315, 58], "EmptySD3LatentImage": [315, 106],
         "EmptyLatentImage": [315, 106], "EmptyHunyuanLatentVideo": [315, 130], "EmptyLTXVLatentVideo": [315, 130],
         "ModelSamplingSD3": [315, 58], "ModelSamplingAuraFlow": [315, 58], "BlockDancePatch": [330, 364],
         "BlockDanceCalibrate": [330, 380], "BlockDanceScheduleLoader": [330, 58],
         "BlockDanceAdaTrain": [330, 360], "BlockDanceAdaLoader": [330, 58], "KSampler": [315, 262],
         "KSamplerAdvanced": [315, 334], "BasicGuider": [240, 46], "BasicScheduler": [315, 106],
         "KSamplerSelect": [315, 58], "RandomNoise": [315, 82], "SamplerCustomAdvanced": [300, 106],
         "SamplerCustom": [315, 230], "LTXVConditioning": [240, 58], "LTXVScheduler": [315, 154],
         "VAEDecode": [210, 46], "VAEDecodeTiled": [315, 150], "SaveImage": [420, 440], "PreviewImage": [330, 300],
         "CreateVideo": [270, 78], "SaveVideo": [420, 440], "LoadTrainingDataset": [315, 78], "SaveLatent": [315, 58],
         "PreviewAny": [400, 260]}

HF = "https://huggingface.co"
FLUX_TE = f"{HF}/comfyanonymous/flux_text_encoders/resolve/main"
WAN21 = f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
WAN22 = f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
HUNYUAN = f"{HF}/Comfy-Org/HunyuanVideo_repackaged/resolve/main/split_files"
QWEN = f"{HF}/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files"
MODEL_FILES = {   # file -> (models/ folder, download URL)
    "flux1-dev.safetensors": ("diffusion_models", f"{HF}/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"),
    "clip_l.safetensors": ("text_encoders", f"{FLUX_TE}/clip_l.safetensors"),
    "t5xxl_fp16.safetensors": ("text_encoders", f"{FLUX_TE}/t5xxl_fp16.safetensors"),
    "ae.safetensors": ("vae", f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors"),
    "sd3.5_large_fp8_scaled.safetensors": (
        "checkpoints", f"{HF}/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/sd3.5_large_fp8_scaled.safetensors"),
    "wan2.1_t2v_1.3B_fp16.safetensors": ("diffusion_models", f"{WAN21}/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("text_encoders", f"{WAN21}/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "wan_2.1_vae.safetensors": ("vae", f"{WAN21}/vae/wan_2.1_vae.safetensors"),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": (
        "diffusion_models", f"{WAN22}/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": (
        "diffusion_models", f"{WAN22}/diffusion_models/wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"),
    "hunyuan_video_t2v_720p_bf16.safetensors": ("diffusion_models", f"{HUNYUAN}/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors"),
    "llava_llama3_fp8_scaled.safetensors": ("text_encoders", f"{HUNYUAN}/text_encoders/llava_llama3_fp8_scaled.safetensors"),
    "hunyuan_video_vae_bf16.safetensors": ("vae", f"{HUNYUAN}/vae/hunyuan_video_vae_bf16.safetensors"),
    "ltx-video-2b-v0.9.safetensors": ("checkpoints", f"{HF}/Lightricks/LTX-Video/resolve/main/ltx-video-2b-v0.9.safetensors"),
    "qwen_image_fp8_e4m3fn.safetensors": ("diffusion_models", f"{QWEN}/diffusion_models/qwen_image_fp8_e4m3fn.safetensors"),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": ("text_encoders", f"{QWEN}/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors"),
    "qwen_image_vae.safetensors": ("vae", f"{QWEN}/vae/qwen_image_vae.safetensors"),
    # The diffusers-format transformer (core's UNETLoader converts it): a .safetensors the frontend's
    # missing-models dialog downloads (it refuses the original .pth).
    "PixArt-Sigma-XL-2-1024-MS.safetensors": (
        "diffusion_models",
        f"{HF}/PixArt-alpha/PixArt-Sigma-XL-2-1024-MS/resolve/main/transformer/diffusion_pytorch_model.safetensors"),
    "sdxl_vae.safetensors": ("vae", f"{HF}/stabilityai/sdxl-vae/resolve/main/sdxl_vae.safetensors"),
}
# Example -> its file name in example_workflows/, which is its title in the template browser: the
# frontend (1.35.9 and 1.58.1 alike) titles a custom node's template by its file name and reads no index
# or title field for them (its getTemplateTitle is `template.title ?? template.name`, and a custom
# template's title is set to its name). Short enough for one line of a 1.58 card (~220 px).
TITLES = {
    "blockdance_start_here": "Start here - SD3.5, 2x faster",
    "blockdance_flux_t2i": "Flux.1 image with BlockDance",
    "blockdance_sd35_t2i": "SD3.5 image with BlockDance",
    "blockdance_wan21_t2v_delta": "Wan 2.1 video, delta mode",
    "blockdance_wan22_t2v_two_experts": "Wan 2.2 video, two experts",
    "blockdance_hunyuan_video_t2v": "Hunyuan video with BlockDance",
    "blockdance_ltxv_t2v": "LTX-Video with BlockDance",
    "blockdance_qwen_image_t2i": "Qwen-Image with BlockDance",
    "blockdance_pixart_sigma_t2i": "PixArt-Sigma with BlockDance",
    "blockdance_calibrate_then_patch": "Calibrate a schedule (Flux)",
    "blockdance_load_schedule": "Load a saved schedule (Flux)",
    "blockdance_ada_train_then_patch": "Train an Ada policy (Flux)",
    "blockdance_ada_policy": "Use an Ada policy (Flux)",
}
BD = ["blockdance", 0.75, 2, 0.4, 0.95, 2.0, "copy"]   # Patch defaults: mode, depth, N, start, end, target_speedup, forecast
NEG_VIDEO = "blurry, low quality, static, still frame, watermark, subtitles, deformed"


class Graph:
    """A UI-format (frontend) workflow under construction."""

    def __init__(self, title: str):
        self.title = title
        self.nodes, self.links = [], []

    def add(self, type_, pos, widgets=(), title=None, size=None):
        node_id = len(self.nodes) + 1
        inputs, outputs = SIGNATURES[type_]
        node = {"id": node_id, "type": type_, "pos": list(pos), "size": list(size or SIZES.get(type_, [315, 100])),
                "flags": {}, "order": node_id - 1, "mode": 0,
                "inputs": [{"name": n, "type": t, "link": None, **({"shape": 7} if opt else {})} for n, t, opt in inputs],
                "outputs": [{"name": n, "type": t, "links": []} for n, t in outputs],
                "properties": {"Node name for S&R": type_}, "widgets_values": list(widgets)}
        if title:
            node["title"] = title
        models = [{"name": w, "url": MODEL_FILES[w][1], "directory": MODEL_FILES[w][0]}
                  for w in widgets if isinstance(w, str) and w in MODEL_FILES]
        if models:
            node["properties"]["models"] = models
        self.nodes.append(node)
        return node_id

    def link(self, src, src_slot, dst, input_name):
        link_id = len(self.links) + 1
        source, target = self.nodes[src - 1], self.nodes[dst - 1]
        slot = next(i for i, inp in enumerate(target["inputs"]) if inp["name"] == input_name)
        link_type = source["outputs"][src_slot]["type"]
        target["inputs"][slot]["link"] = link_id
        source["outputs"][src_slot]["links"].append(link_id)
        self.links.append([link_id, src, src_slot, dst, slot, link_type])

    def note(self, text, pos, size=(400, 330)):
        return self.add("Note", pos, [text], title="Models for this workflow", size=size)

    def to_json(self, scale=0.7):
        _spread(self.nodes)
        for node in self.nodes:
            for out in node["outputs"]:
                out["slot_index"] = node["outputs"].index(out)
        xs = [n["pos"][0] for n in self.nodes] + [n["pos"][0] + n["size"][0] for n in self.nodes]
        ys = [n["pos"][1] for n in self.nodes] + [n["pos"][1] + n["size"][1] for n in self.nodes]
        left, top, right, bottom = min(xs) - 30, min(ys) - 90, max(xs) + 30, max(ys) + 30
        group = {"id": 1, "title": self.title, "bounding": [left, top, right - left, bottom - top],
                 "color": "#3f789e", "font_size": 24, "flags": {}}
        # Open with the group's title bar below the frontend's top bar (tabs and menu, about 100 px).
        offset = [round(60 / scale - left), round(130 / scale - top)]
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [group], "config": {},
                "extra": {"ds": {"scale": scale, "offset": offset}}, "version": 0.4}


TITLE_H, GAP = 30, 40   # a node's title bar (drawn above pos) and the space kept between stacked nodes
ROW_H, VUE_HEADER = 32, 40   # Nodes 2.0: per socket row / widget, and its header


def vue_height(node) -> int:
    """The body height a node takes in Nodes 2.0 (DOM rows, taller than the classic canvas draws), at
    least its saved size."""
    if node["type"] in ("Note", "PreviewImage", "SaveImage", "SaveVideo", "PreviewAny", "CLIPTextEncode"):
        return node["size"][1]
    rows = max(len(node["inputs"]), len(node["outputs"])) + len(node["widgets_values"])
    extra = 130 if node["type"] == "BlockDancePatch" else 0   # the strip
    return max(node["size"][1], VUE_HEADER + ROW_H * rows + extra)


def _spread(nodes) -> None:
    """Push nodes down, column by column, so no two overlap in either renderer."""
    placed = []
    for node in sorted(nodes, key=lambda n: (n["pos"][1], n["pos"][0])):
        x0, x1 = node["pos"][0], node["pos"][0] + node["size"][0]
        moved = True
        while moved:
            moved = False
            for other in placed:
                ox0, ox1 = other["pos"][0], other["pos"][0] + other["size"][0]
                if x0 < ox1 and ox0 < x1:
                    bottom = other["pos"][1] + vue_height(other) + GAP + TITLE_H
                    if node["pos"][1] < bottom and node["pos"][1] + vue_height(node) + GAP + TITLE_H > other["pos"][1]:
                        node["pos"][1], moved = bottom, True
        placed.append(node)


def note_text(what: str, files, extra: str = "") -> str:
    lines = [what, "", "Put these model files in ComfyUI/models/:"]
    lines += [f"  {MODEL_FILES[f][0]}/{f}" for f in files]
    lines += ["", "BlockDance Patch goes after the model loader and any LoRA, right before the sampler. Its strip "
              "previews the plan for the sampler's steps and shows what each step did after a run."]
    if extra:
        lines += ["", extra]
    lines += ["", "Downloads:"] + [f"  {MODEL_FILES[f][1]}" for f in files]
    return "\n".join(lines)


def _decode_save_image(g, samples, vae, x, prefix):
    dec = g.add("VAEDecode", (x, 0))
    g.link(samples, 0, dec, "samples")
    g.link(*vae, dec, "vae")
    save = g.add("SaveImage", (x, 90), [prefix])
    g.link(dec, 0, save, "images")


def _decode_save_video(g, samples, vae, x, prefix, fps, tiled=False):
    dec = g.add("VAEDecodeTiled", (x, 0), [256, 64, 64, 8]) if tiled else g.add("VAEDecode", (x, 0))
    g.link(*samples, dec, "samples")
    g.link(*vae, dec, "vae")
    video = g.add("CreateVideo", (x, 190 if tiled else 90), [fps])
    g.link(dec, 0, video, "images")
    save = g.add("SaveVideo", (x, 310 if tiled else 210), [f"video/{prefix}", "auto", "auto"])
    g.link(video, 0, save, "video")


def _patch_sample_decode(g, model, pos, neg, latent, sampler_widgets, vae, prefix):
    """BlockDance Patch after the model, a KSampler at (1240, 0), then decode and save the image."""
    bd = g.add("BlockDancePatch", (800, 0), BD)
    g.link(model, 0, bd, "model")
    ks = g.add("KSampler", (1240, 0), sampler_widgets)
    for src, name in ((bd, "model"), (pos, "positive"), (neg, "negative"), (latent, "latent_image")):
        g.link(src, 0, ks, name)
    _decode_save_image(g, ks, vae, 1600, prefix)
    return g


def _text(g, clip, pos, text, title):
    node = g.add("CLIPTextEncode", pos, [text], title=title)
    g.link(*clip, node, "clip")
    return node


def flux_t2i(schedule=None):
    """Flux.1 [dev] text to image; with `schedule` the patch takes a saved or calibrated schedule
    ("calibrate", "load") or an Ada policy trained in the graph or loaded ("ada_train", "ada_load")."""
    titles = {None: "BlockDance · Flux.1 [dev] text to image",
              "calibrate": "BlockDance · calibrate then patch (Flux.1 [dev])",
              "load": "BlockDance · saved schedule (Flux.1 [dev])",
              "ada_train": "BlockDance · train an Ada policy then patch (Flux.1 [dev])",
              "ada_load": "BlockDance · Ada policy (Flux.1 [dev])"}
    g = Graph(titles[schedule])
    files = ["flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"]
    extras = {None: "Flux.1 [dev] runs at cfg 1 with FluxGuidance; the negative prompt is zeroed.",
              "calibrate": ("BlockDance Calibrate runs the model once uncached at the KSampler's settings (keep seed, "
                            "steps, cfg, sampler and scheduler the same on both), measures where block features "
                            "are stable and picks the schedule with the least predicted error for target_speedup. "
                            "It saves models/blockdance/flux1-dev_00001.json for BlockDance Load Schedule. Its report "
                            "(on the node and in Preview as Text) says whether simply lowering steps would be closer "
                            "at the same cost; the heat map (Preview Image) shows where features are stable. "
                            "Calibrate once, then mute it and load the schedule."),
              "load": ("BlockDance Load Schedule reads a schedule saved by BlockDance Calibrate from models/blockdance/ "
                       f"(the template '{TITLES['blockdance_calibrate_then_patch']}' makes flux1-dev_00001.json). "
                       "A connected schedule decides the steps, depths and modes; the patch's own settings are ignored."),
              "ada_train": ("BlockDance Ada Train learns a policy that, right after the first step, reads the latent "
                            "and the prompt and picks which of the remaining steps reuse, for each target speedup in "
                            "budgets. Every row of its latent batch is one training item (seed, seed+1, ...); each "
                            "iteration samples `rollouts` masks per item, so training costs about iterations x "
                            "rollouts x items sampling runs. It saves models/blockdance/flux1-dev_ada_00001.safetensors "
                            "for BlockDance Ada Loader. BlockDance Patch runs the policy at its target_speedup. Train "
                            "once, then mute the trainer and load the policy."),
              "ada_load": ("BlockDance Ada Loader reads a policy from models/blockdance/ (the template "
                           f"'{TITLES['blockdance_ada_train_then_patch']}' makes flux1-dev_ada_00001.safetensors; "
                           "python -m benchmarks.train_ada trains one "
                           "from the command line). BlockDance Patch asks it for this latent's mask at "
                           "target_speedup; the log line shows policy=<name> and the mask.")}
    g.note(note_text(g.title, files, extras[schedule]), (0, 0), size=(400, 480 if schedule == "ada_train" else 420))
    unet = g.add("UNETLoader", (440, 0), ["flux1-dev.safetensors", "default"])
    clip = g.add("DualCLIPLoader", (440, 120), ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"])
    vae = g.add("VAELoader", (440, 290), ["ae.safetensors"])
    latent = g.add("EmptySD3LatentImage", (440, 390), [1024, 1024, 1])
    pos = _text(g, (clip, 0), (800, 380), "a red fox reading a newspaper in a small cafe, morning light, photo",
                "Positive Prompt")
    guide = g.add("FluxGuidance", (800, 570), [3.5])
    g.link(pos, 0, guide, "conditioning")
    neg = g.add("ConditioningZeroOut", (800, 660), title="Negative (zero at cfg 1)")
    g.link(pos, 0, neg, "conditioning")
    bd = g.add("BlockDancePatch", (800, 0), BD)
    g.link(unet, 0, bd, "model")
    x_sampler = 1240
    if schedule == "calibrate":
        cal = g.add("BlockDanceCalibrate", (1240, 0), [42, "fixed", 20, 1.0, "euler", "simple", "auto", 1.5, "flux1-dev",
                                                         "copy", "front"])
        for src, name in ((unet, "model"), (guide, "positive"), (neg, "negative"), (latent, "latent_image")):
            g.link(src, 0, cal, name)
        g.link(cal, 0, bd, "schedule")
        heat = g.add("PreviewImage", (1240, 420), title="Calibration heat map", size=(700, 620))
        g.link(cal, 1, heat, "images")
        report = g.add("PreviewAny", (1620, 420 + 620 + 60), title="Calibration report", size=(700, 260))
        g.link(cal, 2, report, "source")
        x_sampler = 1620
    elif schedule == "load":
        loader = g.add("BlockDanceScheduleLoader", (800, -110), ["flux1-dev_00001.json"])
        g.link(loader, 0, bd, "schedule")
    elif schedule == "ada_train":
        items = g.add("EmptySD3LatentImage", (1240, 0), [1024, 1024, 4], title="Training items (one per row)")
        train = g.add("BlockDanceAdaTrain", (1240, 150),
                      [42, "fixed", 20, 1.0, "euler", "simple", "1.5, 2.0, 2.5", 0.0, 10, 4, "flux1-dev_ada",
                       "latent_psnr"])
        for src, name in ((unet, "model"), (guide, "positive"), (neg, "negative"), (items, "latent_image")):
            g.link(src, 0, train, name)
        g.link(train, 0, bd, "policy")
        report = g.add("PreviewAny", (1240, 620), title="Training report", size=(400, 260))
        g.link(train, 1, report, "source")
        x_sampler = 1620
    elif schedule == "ada_load":
        loader = g.add("BlockDanceAdaLoader", (800, -110), ["flux1-dev_ada_00001.safetensors"])
        g.link(loader, 0, bd, "policy")
    ks = g.add("KSampler", (x_sampler, 0), [42, "fixed", 20, 1.0, "euler", "simple", 1.0])
    for src, name in ((bd, "model"), (guide, "positive"), (neg, "negative"), (latent, "latent_image")):
        g.link(src, 0, ks, name)
    _decode_save_image(g, ks, (vae, 0), x_sampler + 360, "BlockDance_flux")
    return g


def _sd35(g, rows, prompt: str, prefix: str):
    """SD3.5 Large from its one checkpoint file, patched, sampled and saved; rows: the y of the latent,
    the positive and the negative prompt."""
    ckpt = g.add("CheckpointLoaderSimple", (440, 0), ["sd3.5_large_fp8_scaled.safetensors"])
    latent = g.add("EmptySD3LatentImage", (440, rows[0]), [1024, 1024, 1])
    pos = _text(g, (ckpt, 1), (800, rows[1]), prompt, "Positive Prompt")
    neg = _text(g, (ckpt, 1), (800, rows[2]), "blurry, low quality", "Negative Prompt")
    return _patch_sample_decode(g, ckpt, pos, neg, latent, [42, "fixed", 28, 4.5, "euler", "sgm_uniform", 1.0], (ckpt, 2),
                                prefix)


def sd35_t2i():
    g = Graph("BlockDance · SD3.5 Large text to image")
    g.note(note_text(g.title, ["sd3.5_large_fp8_scaled.safetensors"],
                     "This checkpoint includes the text encoders (CLIP-L, CLIP-G, T5-XXL fp8) and the VAE."), (0, 0))
    return _sd35(g, (140, 380, 570), "a glass bottle holding a tiny galaxy on a wooden kitchen table", "BlockDance_sd35")


def start_here():
    """The first example for a newcomer: one checkpoint file, the stock text-to-image graph, and
    BlockDance Patch before the KSampler, with a note that says what to look at."""
    g = Graph("BlockDance · start here: SD3.5 text to image, twice as fast")
    files = ["sd3.5_large_fp8_scaled.safetensors"]
    g.note("\n".join([
        "Start here. This is ComfyUI's plain text-to-image graph with one extra node, BlockDance Patch, "
        "between the model and the KSampler.", "",
        "1. Put the one model file in ComfyUI/models/:", f"  {MODEL_FILES[files[0]][0]}/{files[0]}",
        f"  (download: {MODEL_FILES[files[0]][1]})", "",
        "2. Before you run, the strip on BlockDance Patch previews the plan: one cell per KSampler step; "
        "green cells reuse features from the step before and skip most of the model.", "",
        "3. Press Run. The strip then shows what each step did, and the headline how much was reused and "
        "the ideal speedup. Hover a cell for details.", "",
        "4. To compare, bypass BlockDance Patch (Ctrl+B) and run again with the same seed.", "",
        f"Next: the template '{TITLES['blockdance_calibrate_then_patch']}' measures your own model and picks "
        "the steps to reuse."]),
        (0, 0), size=(400, 600))
    return _sd35(g, (160, 440, 640), "a watercolor lighthouse on a cliff at sunrise, seagulls", "BlockDance_start_here")


def _wan_common(g, x_text=800):
    clip = g.add("CLIPLoader", (440, 200), ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"])
    vae = g.add("VAELoader", (440, 340), ["wan_2.1_vae.safetensors"])
    pos = _text(g, (clip, 0), (x_text, 380), "a paper boat drifting down a rainy street at night, cinematic", "Positive Prompt")
    neg = _text(g, (clip, 0), (x_text, 570), NEG_VIDEO, "Negative Prompt")
    return vae, pos, neg


def wan21_t2v():
    g = Graph("BlockDance · Wan 2.1 text to video (1.3B, delta)")
    files = ["wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors"]
    g.note(note_text(g.title, files, "delta mode keeps the current latent flowing through the skipped blocks "
                                     "(Delta-DiT); it is the safer choice for video."), (0, 0))
    unet = g.add("UNETLoader", (440, 0), ["wan2.1_t2v_1.3B_fp16.safetensors", "default"])
    shift = g.add("ModelSamplingSD3", (440, 110), [8.0])
    g.link(unet, 0, shift, "model")
    vae, pos, neg = _wan_common(g)
    latent = g.add("EmptyHunyuanLatentVideo", (440, 430), [832, 480, 33, 1])
    bd = g.add("BlockDancePatch", (800, 0), ["delta", 0.75, 2, 0.4, 0.95, 2.0, "copy"])
    g.link(shift, 0, bd, "model")
    ks = g.add("KSampler", (1240, 0), [42, "fixed", 30, 6.0, "uni_pc", "simple", 1.0])
    for src, name in ((bd, "model"), (pos, "positive"), (neg, "negative"), (latent, "latent_image")):
        g.link(src, 0, ks, name)
    _decode_save_video(g, (ks, 0), (vae, 0), 1600, "BlockDance_wan21", 16)
    return g


def wan22_t2v():
    g = Graph("BlockDance · Wan 2.2 14B text to video (two experts)")
    files = ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
             "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors"]
    g.note(note_text(g.title, files, (
        "Wan 2.2 runs two experts in two KSamplerAdvanced: high noise for steps 0-10, low noise for 10-20. "
        "Each expert gets its own BlockDance Patch. start_percent / end_percent are points of the whole "
        "sampling timeline, so each run reuses where one long run would (here the high-noise run reuses "
        "from 0.4, the low-noise run from its start at 0.5 up to 0.95).")), (0, 0), size=(400, 520))
    high = g.add("UNETLoader", (440, 0), ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "default"],
                 title="Load Diffusion Model (high noise)")
    low = g.add("UNETLoader", (440, 660), ["wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "default"],
                title="Load Diffusion Model (low noise)")
    shift_high = g.add("ModelSamplingSD3", (440, 110), [8.0])
    g.link(high, 0, shift_high, "model")
    shift_low = g.add("ModelSamplingSD3", (440, 770), [8.0])
    g.link(low, 0, shift_low, "model")
    vae, pos, neg = _wan_common(g)
    latent = g.add("EmptyHunyuanLatentVideo", (440, 430), [640, 640, 81, 1])
    bd_high = g.add("BlockDancePatch", (800, 0), BD, title="BlockDance Patch (high noise)")
    g.link(shift_high, 0, bd_high, "model")
    bd_low = g.add("BlockDancePatch", (800, 780), BD, title="BlockDance Patch (low noise)")
    g.link(shift_low, 0, bd_low, "model")
    ks_high = g.add("KSamplerAdvanced", (1240, 0), ["enable", 42, "fixed", 20, 3.5, "euler", "simple", 0, 10, "enable"],
                    title="KSampler (high noise, steps 0-10)")
    ks_low = g.add("KSamplerAdvanced", (1240, 400),
                   ["disable", 0, "fixed", 20, 3.5, "euler", "simple", 10, 10000, "disable"],
                   title="KSampler (low noise, steps 10-20)")
    for ks, bd, lat in ((ks_high, bd_high, latent), (ks_low, bd_low, None)):
        g.link(bd, 0, ks, "model")
        g.link(pos, 0, ks, "positive")
        g.link(neg, 0, ks, "negative")
    g.link(latent, 0, ks_high, "latent_image")
    g.link(ks_high, 0, ks_low, "latent_image")
    _decode_save_video(g, (ks_low, 0), (vae, 0), 1600, "BlockDance_wan22", 16)
    return g


def hunyuan_video_t2v():
    g = Graph("BlockDance · HunyuanVideo text to video")
    files = ["hunyuan_video_t2v_720p_bf16.safetensors", "clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors",
             "hunyuan_video_vae_bf16.safetensors"]
    g.note(note_text(g.title, files, "The preview reads the steps from BasicScheduler."), (0, 0))
    unet = g.add("UNETLoader", (440, 0), ["hunyuan_video_t2v_720p_bf16.safetensors", "default"])
    shift = g.add("ModelSamplingSD3", (440, 110), [7.0])
    g.link(unet, 0, shift, "model")
    clip = g.add("DualCLIPLoader", (440, 200),
                 ["clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors", "hunyuan_video", "default"])
    vae = g.add("VAELoader", (440, 370), ["hunyuan_video_vae_bf16.safetensors"])
    latent = g.add("EmptyHunyuanLatentVideo", (440, 460), [848, 480, 73, 1])
    pos = _text(g, (clip, 0), (800, 380), "a fox running through fresh snow in a pine forest, tracking shot", "Prompt")
    guide = g.add("FluxGuidance", (800, 570), [6.0])
    g.link(pos, 0, guide, "conditioning")
    bd = g.add("BlockDancePatch", (800, 0), BD)
    g.link(shift, 0, bd, "model")
    guider = g.add("BasicGuider", (1240, 0))
    g.link(bd, 0, guider, "model")
    g.link(guide, 0, guider, "conditioning")
    sched = g.add("BasicScheduler", (1240, 90), ["simple", 20, 1.0])
    g.link(bd, 0, sched, "model")
    sampler = g.add("KSamplerSelect", (1240, 230), ["euler"])
    noise = g.add("RandomNoise", (1240, 320), [42, "fixed"])
    run = g.add("SamplerCustomAdvanced", (1240, 440))
    for src, name in ((noise, "noise"), (guider, "guider"), (sampler, "sampler"), (sched, "sigmas"),
                      (latent, "latent_image")):
        g.link(src, 0, run, name)
    _decode_save_video(g, (run, 0), (vae, 0), 1600, "BlockDance_hunyuan", 24, tiled=True)
    return g


def ltxv_t2v():
    g = Graph("BlockDance · LTX-Video text to video")
    files = ["ltx-video-2b-v0.9.safetensors", "t5xxl_fp16.safetensors"]
    g.note(note_text(g.title, files, "The LTX-Video checkpoint includes its VAE. The preview reads the steps "
                                     "from LTXVScheduler (its sigmas are not the simple scheduler's)."), (0, 0))
    ckpt = g.add("CheckpointLoaderSimple", (440, 0), ["ltx-video-2b-v0.9.safetensors"])
    clip = g.add("CLIPLoader", (440, 140), ["t5xxl_fp16.safetensors", "ltxv", "default"])
    latent = g.add("EmptyLTXVLatentVideo", (440, 280), [768, 512, 97, 1])
    pos = _text(g, (clip, 0), (800, 380), "a woman with long brown hair smiles at the camera in warm evening light",
                "Positive Prompt")
    neg = _text(g, (clip, 0), (800, 570), "low quality, worst quality, deformed, distorted, motion smear", "Negative Prompt")
    cond = g.add("LTXVConditioning", (1240, 0), [25.0])
    g.link(pos, 0, cond, "positive")
    g.link(neg, 0, cond, "negative")
    bd = g.add("BlockDancePatch", (800, 0), BD)
    g.link(ckpt, 0, bd, "model")
    sched = g.add("LTXVScheduler", (1240, 100), [30, 2.05, 0.95, True, 0.1])
    g.link(latent, 0, sched, "latent")
    sampler = g.add("KSamplerSelect", (1240, 290), ["euler"])
    run = g.add("SamplerCustom", (1240, 380), [True, 42, "fixed", 3.0])
    g.link(bd, 0, run, "model")
    g.link(cond, 0, run, "positive")
    g.link(cond, 1, run, "negative")
    for src, name in ((sampler, "sampler"), (sched, "sigmas"), (latent, "latent_image")):
        g.link(src, 0, run, name)
    _decode_save_video(g, (run, 0), (ckpt, 2), 1600, "BlockDance_ltxv", 24)
    return g


def qwen_image_t2i():
    g = Graph("BlockDance · Qwen-Image text to image")
    files = ["qwen_image_fp8_e4m3fn.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image_vae.safetensors"]
    g.note(note_text(g.title, files), (0, 0))
    unet = g.add("UNETLoader", (440, 0), ["qwen_image_fp8_e4m3fn.safetensors", "default"])
    shift = g.add("ModelSamplingAuraFlow", (440, 110), [3.1])
    g.link(unet, 0, shift, "model")
    clip = g.add("CLIPLoader", (440, 200), ["qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image", "default"])
    vae = g.add("VAELoader", (440, 340), ["qwen_image_vae.safetensors"])
    latent = g.add("EmptySD3LatentImage", (440, 430), [1328, 1328, 1])
    pos = _text(g, (clip, 0), (800, 380), 'a neon-lit street at dusk with a shop sign that reads "BLOCKDANCE"',
                "Positive Prompt")
    neg = _text(g, (clip, 0), (800, 570), "", "Negative Prompt")
    return _patch_sample_decode(g, shift, pos, neg, latent, [42, "fixed", 20, 2.5, "euler", "simple", 1.0], (vae, 0),
                                "BlockDance_qwen_image")


def pixart_sigma_t2i():
    g = Graph("BlockDance · PixArt-Sigma text to image")
    files = ["PixArt-Sigma-XL-2-1024-MS.safetensors", "t5xxl_fp16.safetensors", "sdxl_vae.safetensors"]
    g.note(note_text(g.title, files, "BlockDance's paper setting (depth 0.75 = 21 of PixArt's 28 blocks) "
                                     "comes from PixArt."), (0, 0))
    unet = g.add("UNETLoader", (440, 0), ["PixArt-Sigma-XL-2-1024-MS.safetensors", "default"])
    clip = g.add("CLIPLoader", (440, 110), ["t5xxl_fp16.safetensors", "pixart", "default"])
    vae = g.add("VAELoader", (440, 250), ["sdxl_vae.safetensors"])
    latent = g.add("EmptyLatentImage", (440, 340), [1024, 1024, 1])
    pos = _text(g, (clip, 0), (800, 380), "a small cactus with a happy face in the Sahara desert", "Positive Prompt")
    neg = _text(g, (clip, 0), (800, 570), "", "Negative Prompt")
    return _patch_sample_decode(g, unet, pos, neg, latent, [42, "fixed", 20, 4.5, "euler", "simple", 1.0], (vae, 0),
                                "BlockDance_pixart")


# example -> (builder, family as the `BlockDance:` log line names it); its file is path(example)
EXAMPLES = {
    "blockdance_start_here": (start_here, "sd3"),
    "blockdance_flux_t2i": (flux_t2i, "flux"),
    "blockdance_sd35_t2i": (sd35_t2i, "sd3"),
    "blockdance_wan21_t2v_delta": (wan21_t2v, "wan"),
    "blockdance_wan22_t2v_two_experts": (wan22_t2v, "wan"),
    "blockdance_hunyuan_video_t2v": (hunyuan_video_t2v, "hunyuan_video"),
    "blockdance_ltxv_t2v": (ltxv_t2v, "ltxv"),
    "blockdance_qwen_image_t2i": (qwen_image_t2i, "qwen_image"),
    "blockdance_pixart_sigma_t2i": (pixart_sigma_t2i, "pixart"),
    "blockdance_calibrate_then_patch": (lambda: flux_t2i("calibrate"), "flux"),
    "blockdance_load_schedule": (lambda: flux_t2i("load"), "flux"),
    "blockdance_ada_train_then_patch": (lambda: flux_t2i("ada_train"), "flux"),
    "blockdance_ada_policy": (lambda: flux_t2i("ada_load"), "flux"),
}


# The group's colour per model family, hues apart, so templates of different models tell apart at a
# glance on the canvas and in their thumbnails (tests/host/test_workflows.py measures the thumbnails).
FAMILY_COLORS = {"sd3": "#4a8a4a", "flux": "#a1309b", "wan": "#3f789e", "hunyuan_video": "#a83a3a",
                 "ltxv": "#b58b2a", "qwen_image": "#2a9d9d", "pixart": "#777777"}


def build(name: str) -> dict:
    builder, family = EXAMPLES[name]
    workflow = builder().to_json()
    workflow["groups"][0]["color"] = FAMILY_COLORS[family]
    return workflow


def path(name: str, ext: str = ".json") -> str:
    """An example's file (`.json`, or its thumbnail `.jpg`) in example_workflows/."""
    return os.path.join(EXAMPLES_DIR, TITLES[name] + ext)


def tiny_sd3_graph(cond_folder: str, seed: int = 7) -> dict:
    """The browser test's graph: a tiny SD3 from UNETLoader, saved conditioning, BlockDance Patch,
    KSampler (seed incremented on every Run, so each Run samples again: the server skips a prompt it
    has run before) and SaveLatent."""
    g = Graph("BlockDance · tiny SD3 (browser test)")
    unet = g.add("UNETLoader", (0, 0), ["tiny_sd3.safetensors", "default"])
    cond = g.add("LoadTrainingDataset", (0, 120), [cond_folder])
    zero = g.add("ConditioningZeroOut", (0, 240))
    g.link(cond, 1, zero, "conditioning")
    latent = g.add("EmptySD3LatentImage", (0, 310), [64, 64, 1])
    bd = g.add("BlockDancePatch", (360, 0), BD)
    g.link(unet, 0, bd, "model")
    ks = g.add("KSampler", (740, 0), [seed, "increment", 10, 2.0, "euler", "simple", 1.0])
    g.link(bd, 0, ks, "model")
    g.link(cond, 1, ks, "positive")
    g.link(zero, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    save = g.add("SaveLatent", (740, 330), ["latents/blockdance_browser"])
    g.link(ks, 0, save, "samples")
    return g.to_json(scale=1.0)


def tiny_sd3_calibrate_graph(cond_folder: str, seed: int = 11) -> dict:
    """The browser test's calibration graph: BlockDance Calibrate on the tiny SD3 (10 steps, target
    1.5x), its heat map in Preview Image and its report on the node itself."""
    g = Graph("BlockDance · tiny SD3 calibration (browser test)")
    unet = g.add("UNETLoader", (0, 0), ["tiny_sd3.safetensors", "default"])
    cond = g.add("LoadTrainingDataset", (0, 140), [cond_folder])
    zero = g.add("ConditioningZeroOut", (0, 280))
    g.link(cond, 1, zero, "conditioning")
    latent = g.add("EmptySD3LatentImage", (0, 380), [64, 64, 1])
    cal = g.add("BlockDanceCalibrate", (360, 0), [seed, "increment", 10, 2.0, "euler", "simple", "auto", 1.5, "", "copy", "front"],
                size=(360, 560))
    for src, slot, name in ((unet, 0, "model"), (cond, 1, "positive"), (zero, 0, "negative"), (latent, 0, "latent_image")):
        g.link(src, slot, cal, name)
    heat = g.add("PreviewImage", (760, 0), title="Calibration heat map", size=(700, 640))
    g.link(cal, 1, heat, "images")
    return g.to_json(scale=1.0)


def main(argv=None) -> None:
    os.makedirs(EXAMPLES_DIR, exist_ok=True)
    for name in EXAMPLES:
        with open(path(name), "w") as f:
            json.dump(build(name), f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {os.path.relpath(path(name), ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
