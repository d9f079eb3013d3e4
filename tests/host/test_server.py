"""The pack inside a real ComfyUI server: loading, node info, example workflows, a prompt over HTTP
with the `BlockDance:` line in the log and the stats shown on the node over the websocket."""
import json
import os
import struct
import sys
import time
import uuid

import pytest
import torch

from benchmarks.comfy_env import PACK_ROOT

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "browser"))
import bd_server  # noqa: E402  (the one real-server harness of the tests)

PACK_DIR_NAME = "ComfyUI-BlockDance"
EXAMPLES = os.path.join(PACK_ROOT, "example_workflows")
POLICIES = os.path.join(PACK_ROOT, "benchmarks", "reference", "policies")


@pytest.fixture(scope="module")
def server(comfy, tiny, tmp_path_factory):
    """A real server (tests/browser/bd_server.py) with a tiny SD3, the reference Wan model, a digit
    class as conditioning and the shipped Ada policies in its blockdance folder."""
    base = str(tmp_path_factory.mktemp("comfy_server"))
    for d in ("models", "blockdance"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    tiny.save_checkpoint("sd3", os.path.join(base, "models", "tiny_sd3.safetensors"))
    tm = tiny.build("sd3")
    # LoadTrainingDataset (a stock node) feeds conditioning without any text-encoder weights.
    bd_server.write_conditioning(base, "tiny_cond", tm.latent, tm.positive)
    # The shipped reference Wan model, a digit class as its conditioning, and the shipped Ada policies.
    from benchmarks.reference import models
    wan = models.get("wan21")
    os.symlink(wan.weights, os.path.join(base, "models", os.path.basename(wan.weights)))
    bd_server.write_conditioning(base, "ref_cond", {"samples": wan.empty_latent(1)}, [[wan.load_class_contexts()[3:4], {}]])
    for name in os.listdir(POLICIES):
        os.symlink(os.path.join(POLICIES, name), os.path.join(base, "blockdance", name))
    srv = bd_server.ComfyServer(comfy, base)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def prompt(patch=None):
    graph = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_sd3.safetensors", "weight_dtype": "default"}},
        "cond": {"class_type": "LoadTrainingDataset", "inputs": {"folder_name": "tiny_cond"}},
        "zero": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["cond", 1]}},
        "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "ks": {"class_type": "KSampler", "inputs": {
            "model": ["unet", 0], "seed": 7, "steps": 10, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["cond", 1], "negative": ["zero", 0], "latent_image": ["latent", 0], "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0], "filename_prefix": f"latents/{uuid.uuid4().hex}"}},
    }
    if patch is not None:
        graph["bd"] = {"class_type": "BlockDancePatch", "inputs": {"model": ["unet", 0], **patch}}
        graph["ks"]["inputs"]["model"] = ["bd", 0]
    return graph


def latent_of(server, entry):
    from safetensors.torch import load_file
    (item,) = entry["outputs"]["save"]["latents"]
    return load_file(os.path.join(server.output_dir, item["subfolder"], item["filename"]))["latent_tensor"]


def test_node_is_registered_with_tooltips(server):
    info = server.get("/object_info/BlockDancePatch")["BlockDancePatch"]
    assert info["display_name"] == "BlockDance Patch"
    required = info["input"]["required"]
    assert list(required) == ["model", "mode", "depth", "N", "start_percent", "end_percent"]
    assert all(spec[1].get("tooltip") for spec in required.values())
    assert required["mode"][1]["options"] == ["blockdance", "delta"]
    assert required["depth"][1]["default"] == 0.75 and required["N"][1]["default"] == 2
    assert info["output"] == ["MODEL"]


def test_example_workflows_are_listed_and_use_known_nodes(server):
    listed = server.get("/workflow_templates")
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(EXAMPLES) if f.endswith(".json"))
    assert sorted(listed[PACK_DIR_NAME]) == names and names
    object_info = server.get("/object_info")
    required = object_info["BlockDancePatch"]["input"]["required"]
    for name in names:
        with open(os.path.join(EXAMPLES, name + ".json")) as f:
            wf = json.load(f)
        ids = {n["id"] for n in wf["nodes"]}
        for node in wf["nodes"]:
            assert node["type"] in object_info or node["type"] in ("Note", "MarkdownNote"), \
                f"{name}: unknown node {node['type']}"   # notes are frontend-only
        for link_id, src, _, dst, _, _ in wf["links"]:
            assert src in ids and dst in ids, f"{name}: link {link_id} dangles"
        for node in (n for n in wf["nodes"] if n["type"] == "BlockDancePatch"):
            mode, depth, n_, start, end = node["widgets_values"][:5]
            assert mode in required["mode"][1]["options"]
            assert required["depth"][1]["min"] <= depth <= required["depth"][1]["max"] and n_ >= 1 and start < end


def test_prompt_over_http_logs_and_shows_stats(server):
    import asyncio
    import aiohttp

    client_id = uuid.uuid4().hex
    texts, events = [], []

    async def run():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.url.replace('http', 'ws')}/ws?clientId={client_id}") as ws:
                loop = asyncio.get_running_loop()
                patched = prompt({"mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95})
                entry = await loop.run_in_executor(None, server.run_prompt, patched, client_id)
                deadline = time.time() + 10
                while time.time() < deadline and not (any("family=sd3" in t for t in texts) and events):
                    try:
                        msg = await ws.receive(timeout=1)
                    except asyncio.TimeoutError:
                        continue
                    # Binary event 3 (TEXT): event id, node-id length, node id, text (PromptServer.send_progress_text, core v0.8.0).
                    if msg.type == aiohttp.WSMsgType.BINARY and struct.unpack(">I", msg.data[:4])[0] == 3:
                        node_len = struct.unpack(">I", msg.data[4:8])[0]
                        node_id, text = msg.data[8:8 + node_len].decode(), msg.data[8 + node_len:].decode()
                        texts.append(f"{node_id}|{text}")
                    elif msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "blockdance.run":
                        events.append(json.loads(msg.data)["data"])
                return entry

    entry = asyncio.run(run())
    assert torch.isfinite(latent_of(server, entry)).all()
    lines = [line for line in server.log_lines() if "BlockDance: family=sd3" in line]
    assert lines and "reused=3/10" in lines[-1] and "blocks_skipped=9/40" in lines[-1]
    shown = [t for t in texts if t.startswith("bd|") and "family=sd3" in t]
    assert shown and shown[-1].split("|", 1)[1].startswith("reused 3/10 · ideal 1.29x"), texts
    (event,) = events
    assert event["node"] == "bd" and event["line"] in lines[-1]
    steps = event["record"]["steps"]
    assert [s["done"] for s in steps] == ["full"] * 4 + ["cache", "reuse"] * 3
    assert sum(s["blocks_skipped"] for s in steps) == 9 and event["record"]["num_blocks"] == 4


def test_n1_over_http_is_bit_identical(server):
    base = latent_of(server, server.run_prompt(prompt(), "x"))
    n1 = latent_of(server, server.run_prompt(
        prompt({"mode": "delta", "depth": 0.5, "N": 1, "start_percent": 0.0, "end_percent": 1.0}), "x"))
    reused = latent_of(server, server.run_prompt(
        prompt({"mode": "delta", "depth": 0.5, "N": 2, "start_percent": 0.0, "end_percent": 1.0}), "x"))
    assert torch.equal(base, n1) and not torch.equal(base, reused)


@pytest.mark.parametrize("settings, message", [
    ({"depth": 0.75, "start_percent": 0.9, "end_percent": 0.5}, "start_percent=0.9 must be below end_percent=0.5"),
    ({"depth": 0.0, "start_percent": 0.4, "end_percent": 0.95}, "depth=0.0 is outside (0, 1]"),  # the widget allows 0
])
def test_bad_input_over_http_is_reported_on_the_node(server, settings, message):
    with pytest.raises(AssertionError) as err:
        server.run_prompt(prompt({"mode": "blockdance", "N": 2, **settings}), "x")
    assert message in str(err.value)


def test_calibrate_then_patch_over_http(server):
    """BlockDance Calibrate in a real server: its schedule drives BlockDance Patch, its heat map is
    an image a Preview Image node shows, its report is shown on the node."""
    graph = prompt()
    graph["cal"] = {"class_type": "BlockDanceCalibrate", "inputs": {
        "model": ["unet", 0], "positive": ["cond", 1], "negative": ["zero", 0], "latent_image": ["latent", 0],
        "seed": 1, "steps": 10, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple", "mode": "auto",
        "target_speedup": 1.5, "filename_prefix": ""}}
    graph["bd"] = {"class_type": "BlockDancePatch", "inputs": {
        "model": ["unet", 0], "mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95,
        "schedule": ["cal", 0]}}
    graph["ks"]["inputs"]["model"] = ["bd", 0]
    graph["heat"] = {"class_type": "PreviewImage", "inputs": {"images": ["cal", 1]}}
    entry = server.run_prompt(graph, "x", timeout=180)
    assert torch.isfinite(latent_of(server, entry)).all()
    (image,) = entry["outputs"]["heat"]["images"]
    assert image["filename"].endswith(".png")
    (report,) = entry["outputs"]["cal"]["text"]
    assert report.startswith("BlockDance schedule 'calibrated-1.5x'") and "=>" in report
    lines = [line for line in server.log_lines() if "BlockDance: family=sd3" in line and "schedule=" in line]
    assert lines and "schedule=calibrated-1.5x" in lines[-1]


def ada_prompt(unet, cond_folder, latent):
    graph = prompt()
    graph["unet"]["inputs"]["unet_name"] = unet
    graph["cond"]["inputs"]["folder_name"] = cond_folder
    graph["latent"] = latent
    graph["ada"] = {"class_type": "BlockDanceAdaLoader", "inputs": {"policy_name": "wan21_euler.safetensors"}}
    graph["bd"] = {"class_type": "BlockDancePatch", "inputs": {
        "model": ["unet", 0], "mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95,
        "policy": ["ada", 0], "target_speedup": 2.0}}
    graph["ks"]["inputs"].update(model=["bd", 0], steps=30)
    return graph


def test_shipped_ada_policy_over_http(server):
    """A shipped BlockDance-Ada policy loads through its node in a real server, drives the reference
    Wan model at the budget it is asked for, and its mask is in the log line; given another model it
    is refused, naming both."""
    video_latent = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 1,
                                                                         "batch_size": 1}}
    entry = server.run_prompt(ada_prompt("wan_mnist_reference.safetensors", "ref_cond", video_latent), "x")
    assert torch.isfinite(latent_of(server, entry)).all()
    lines = [line for line in server.log_lines() if "BlockDance: family=wan" in line and "policy=" in line]
    assert lines and "policy=wan21_euler" in lines[-1] and "ideal=2.00x" in lines[-1]
    mask = lines[-1].split("mask=")[1].split()[0]
    assert len(mask) == 29 and set(mask) <= {"C", "R"} and "R" in mask
    sd3_latent = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    with pytest.raises(AssertionError) as err:
        server.run_prompt(ada_prompt("tiny_sd3.safetensors", "tiny_cond", sd3_latent), "x")
    assert "trained for wan, 24 blocks, latent channels 16, conditioning width 4096; this model is sd3, 4 blocks" \
        in str(err.value)
