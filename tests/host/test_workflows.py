"""The example workflows: what they tell a user (title, model files and folders, an opening view below
the top bar, a thumbnail), and that each one, converted to an API prompt and moved onto tiny
random-weight models of its family (tests/browser/bd_workflows.py says exactly what is swapped), runs
in a real ComfyUI server with BlockDance reporting every patched sampler run."""
import json
import os
import re
import sys

import pytest

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "browser"))
import bd_server  # noqa: E402
import bd_shots  # noqa: E402
import bd_workflows  # noqa: E402
from tools import examples  # noqa: E402

TINY_FOR = {   # example -> {model file the workflow names: tiny file of the same family}
    "blockdance_start_here": {"sd3.5_large_fp8_scaled.safetensors": "tiny_sd3.safetensors"},
    "blockdance_flux_t2i": {"flux1-dev.safetensors": "tiny_flux.safetensors"},
    "blockdance_sd35_t2i": {"sd3.5_large_fp8_scaled.safetensors": "tiny_sd3.safetensors"},
    "blockdance_wan21_t2v_delta": {"wan2.1_t2v_1.3B_fp16.safetensors": "tiny_wan21.safetensors"},
    "blockdance_wan22_t2v_two_experts": {"wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": "tiny_wan21.safetensors",
                                         "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors":
                                             "tiny_wan21_low_noise.safetensors"},
    "blockdance_hunyuan_video_t2v": {"hunyuan_video_t2v_720p_bf16.safetensors": "tiny_hunyuan_video.safetensors"},
    "blockdance_ltxv_t2v": {"ltx-video-2b-v0.9.safetensors": "tiny_ltxv.safetensors"},
    "blockdance_qwen_image_t2i": {"qwen_image_fp8_e4m3fn.safetensors": "tiny_qwen_image.safetensors"},
    "blockdance_pixart_sigma_t2i": {"PixArt-Sigma-XL-2-1024-MS.safetensors": "tiny_pixart_sigma.safetensors"},
    "blockdance_calibrate_then_patch": {"flux1-dev.safetensors": "tiny_flux.safetensors"},
    "blockdance_load_schedule": {"flux1-dev.safetensors": "tiny_flux.safetensors"},
    "blockdance_ada_train_then_patch": {"flux1-dev.safetensors": "tiny_flux.safetensors"},
    "blockdance_ada_policy": {"flux1-dev.safetensors": "tiny_flux.safetensors"},
}
TINY_FAMILY = {"flux": "flux", "sd3": "sd3", "wan": "wan21", "hunyuan_video": "hunyuan_video", "ltxv": "ltxv",
               "qwen_image": "qwen_image", "pixart": "pixart_sigma"}
IMAGE_SIZE = {"pixart": 272}
SAVED_SCHEDULE = "flux1-dev_00001.json"   # what the calibrate example saves and the loader example loads
SAVED_POLICY = "flux1-dev_ada_00001.safetensors"   # what the Ada training example saves and the Ada example loads
MAKES = {"blockdance_load_schedule": (SAVED_SCHEDULE, "blockdance_calibrate_then_patch"),
         "blockdance_ada_policy": (SAVED_POLICY, "blockdance_ada_train_then_patch")}


def load(name):
    with open(examples.path(name)) as f:
        return json.load(f)


def test_every_example_is_covered_and_is_what_the_builder_writes():
    files = sorted(f[:-5] for f in os.listdir(bd_server.EXAMPLES) if f.endswith(".json"))
    assert sorted(examples.EXAMPLES) == sorted(TINY_FOR) == sorted(examples.TITLES)
    assert files == sorted(examples.TITLES.values())   # each file named by its title (the template browser shows it)
    for name in examples.EXAMPLES:
        assert load(name) == json.loads(json.dumps(examples.build(name))), \
            f"{examples.path(name)} differs from tools/examples.py; run python -m tools.examples"


THUMB_CARD = (160, 90)   # about the size the template browser shows a thumbnail at
DIFFERENT = 4.0           # mean absolute pixel difference (0-255) between thumbnails of two models (the
                          # canvas crops before issue 20 were 3.1 apart for SD3.5 and Qwen-Image; now 4.7 at least)


def test_thumbnails_show_each_graph_and_differ_per_model():
    """Issue 20 item 3: each thumbnail is its whole graph (the aspect of the box tests/browser/bd_shots.py
    fits, so it was taken from the graph as it is now), and any two of different model families differ
    at a glance (group colour, layout), measured at card size."""
    from PIL import Image, ImageChops, ImageStat
    small = {}
    for name in examples.EXAMPLES:
        with Image.open(examples.path(name, ".jpg")) as im:
            _, _, w, h = bd_shots.graph_box(examples.build(name))
            assert im.width == bd_shots.THUMB_WIDTH and abs(im.width / im.height - w / h) < 0.02, (name, im.size, w / h)
            small[name] = im.convert("RGB").resize(THUMB_CARD)
    for a in small:
        for b in small:
            if a < b and examples.EXAMPLES[a][1] != examples.EXAMPLES[b][1]:
                diff = sum(ImageStat.Stat(ImageChops.difference(small[a], small[b])).mean) / 3
                assert diff > DIFFERENT, f"the thumbnails of {a} and {b} look alike ({diff:.1f})"


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_example_explains_itself(name):
    """A titled group, a Note naming every model file with its models/ folder (and the same on the
    loader for the frontend's download dialog), a thumbnail, and an opening view below the top bar."""
    # Its file name is its title in the template browser: plain ASCII any OS can hold and a URL can carry.
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 .,()-]*[A-Za-z0-9)]", examples.TITLES[name]), examples.TITLES[name]
    wf = load(name)
    (group,) = wf["groups"]
    assert group["title"].startswith("BlockDance · ")
    notes = [n for n in wf["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and notes[0]["title"] == "Models for this workflow"
    text = notes[0]["widgets_values"][0]
    named = [w for n in wf["nodes"] if n["type"] != "Note" and not n["type"].startswith("BlockDance")
             for w in n.get("widgets_values", []) if isinstance(w, str) and w.endswith((".safetensors", ".pth"))]
    assert "ComfyUI/models/" in text
    assert named and all(f"  {examples.MODEL_FILES[f][0]}/{f}\n" in text for f in named), text
    for node in wf["nodes"]:
        for model in node["properties"].get("models", []):
            assert model["name"] in node["widgets_values"] and model["url"].startswith("https://huggingface.co/")
            assert model["name"].endswith((".safetensors", ".sft"))   # the only files the frontend downloads
    with open(examples.path(name, ".jpg"), "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff", f"{examples.path(name, '.jpg')} is not a JPEG"
    scale, (ox, oy) = wf["extra"]["ds"]["scale"], wf["extra"]["ds"]["offset"]
    left, top = group["bounding"][:2]
    assert (top + oy) * scale >= 100 and (left + ox) * scale >= 0   # the browser test checks it on screen
    for node in wf["nodes"]:
        assert node["pos"][1] - 30 >= top and node["pos"][0] >= left, f"node {node['id']} is outside the group"


@pytest.fixture(scope="module")
def server(comfy, tiny, tmp_path_factory):
    srv = bd_server.ComfyServer(comfy, str(tmp_path_factory.mktemp("workflows")))
    try:
        bd_server.write_tiny_models(tiny, srv.models_dir, srv.base)
        srv.wait_ready()
        srv.object_info = srv.get("/object_info")
        yield srv
    finally:
        srv.stop()


def run_example(server, name):
    family = examples.EXAMPLES[name][1]
    prompt = bd_workflows.on_tiny_models(
        bd_workflows.to_api(load(name), server.object_info), TINY_FOR[name],
        bd_server.conditioning_folder(TINY_FAMILY[family]), size=IMAGE_SIZE.get(family, 64), save_prefix=f"latents/{name}")
    before = server.log().count("BlockDance: family=")
    entry, events = server.run_prompt_with_events(prompt)
    lines = [line for line in server.log_lines() if "BlockDance: family=" in line][before:]
    return prompt, entry, events, lines


@pytest.mark.parametrize("name", list(examples.EXAMPLES))
def test_example_runs_on_tiny_models(server, name):
    from safetensors.torch import load_file
    import torch

    if name in MAKES and not os.path.exists(os.path.join(server.schedules_dir, MAKES[name][0])):
        run_example(server, MAKES[name][1])   # makes the schedule or policy the loader example names
    prompt, entry, events, lines = run_example(server, name)
    family = examples.EXAMPLES[name][1]
    patches = sorted(str(n["id"]) for n in load(name)["nodes"] if n["type"] == "BlockDancePatch")
    # Every BlockDance Patch reported its sampler run to the browser, with the log line it wrote.
    assert sorted(e["node"] for e in events) == patches, events
    for event in events:
        assert f"family={family} " in event["line"] and event["line"] in lines and event["record"]["num_steps"] > 0
        if name in ("blockdance_calibrate_then_patch", "blockdance_load_schedule"):
            assert "schedule=flux1-dev" in event["line"]
        if name in ("blockdance_ada_train_then_patch", "blockdance_ada_policy"):
            assert "policy=flux1-dev_ada_00001 " in event["line"] and " mask=" in event["line"], event["line"]
    for made, maker in MAKES.values():
        if name == maker:
            assert os.path.exists(os.path.join(server.schedules_dir, made))
    saved = [item for out in entry["outputs"].values() for item in out.get("latents", [])]
    assert len(saved) == sum(1 for n in prompt.values() if n["class_type"] == "SaveLatent") >= 1
    for item in saved:
        latent = load_file(os.path.join(server.output_dir, item["subfolder"], item["filename"]))["latent_tensor"]
        assert torch.isfinite(latent).all()


def plan(server, **query):
    import urllib.error
    import urllib.parse
    base = {"mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95}
    try:
        return 200, server.get("/blockdance/plan?" + urllib.parse.urlencode({**base, **query}))
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_plan_preview_route(server):
    """GET /blockdance/plan: the core's plan at the sampler's steps (KSampler denoise and KSamplerAdvanced
    slices placed on the timeline as ComfyUI slices them), and a value out of range is an error naming
    the input and the allowed range, never a clamp."""
    status, body = plan(server, steps=10)
    assert status == 200 and [s["planned"] for s in body["steps"]] == ["full"] * 4 + ["cache", "reuse"] * 3
    assert body["reused"] == 3 and body["num_blocks"] is None and "simple scheduler" in body["assumes"]
    late = ["cache", "reuse"] * 4 + ["full", "full"]          # positions 0.50 ... 0.95
    status, body = plan(server, steps=20, start_at_step=10, end_at_step=10000)
    assert status == 200 and [s["planned"] for s in body["steps"]] == late and body["steps"][0]["position"] == 0.5
    assert [s["planned"] for s in plan(server, steps=10, denoise=0.5)[1]["steps"]] == late
    status, body = plan(server, steps=10, num_blocks=4)
    assert body["num_blocks"] == 4 and {s["depth"] for s in body["steps"] if s["planned"] == "reuse"} == {0.75}
    assert body["ideal_speedup"] == round(40 / 31, 4)        # 9 of 40 block calls skipped
    for query, named in [({"steps": 10, "depth": 0.0}, "depth=0.0 is outside (0, 1]"),
                         ({"steps": 10, "N": 0}, "N=0 is outside the allowed range: it must be an integer in [1, 100]"),
                         ({"steps": 0}, "steps=0 is outside the allowed range: it must be an integer in [1, 10000]"),
                         ({"steps": 10, "end_percent": 1.5}, "end_percent=1.5 must lie in [0, 1]"),
                         ({"steps": 10, "denoise": 2}, "denoise=2 is outside the allowed range: it must be a number in [0.0, 1.0]"),
                         ({"steps": 10, "mode": "fast"}, "mode='fast' is not supported; allowed: blockdance, delta"),
                         ({"steps": 10, "schedule_name": "nope.json"}, "schedule_name='nope.json' is not in models/blockdance/")]:
        status, body = plan(server, **query)
        assert status == 400 and body["error"].startswith(named), (query, body)
