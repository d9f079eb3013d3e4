"""Red team (issue 14): every file, prompt and request is untrusted. One test (or more) per row:

C1  filename_prefix cannot write outside models/blockdance (the file system is listed before and after)
C2  Ada Train trains at any seed the widget accepts
C3  malformed schedule files: an error naming the file, HTTP 400 from the plan route, never 500
C4  plan previews never stall the server (/queue latency during 20 concurrent worst-case previews)
C5  the Ada Loader checks a policy's metadata and tensors before it allocates anything
C6  Ada Train refuses a rho that leaves no step, before any run
C7  /blockdance/plan: a tiny denoise and a schedule without blocks are 400s naming the parameter
C8  policy metadata out of range (cut, mode, rho) is refused at load, naming the file and field
C9  a schedule for blocks of another width, a policy for another conditioning width: refused, never silent
C10 an unusable prefix is found at validation, before the calibration or training runs
C11 the run event goes only to the client that queued the prompt, with its prompt id
C12 is in test_host_robustness.py (SkipLayerGuidance over the skipped range).
"""
import asyncio
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
import torch

from helpers import node

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "browser"))
import bd_server  # noqa: E402


def core(pack, name):
    return sys.modules[f"{pack.__name__}.blockdance_core.{name}"]


def pack_module(pack, name):
    return sys.modules[f"{pack.__name__}.nodes.{name}"]


@pytest.fixture(scope="module")
def wan(tiny):
    return tiny.build("wan21", seed=0, config_overrides={"num_layers": 6})


@pytest.fixture()
def blockdance_folder(tmp_path, monkeypatch):
    import folder_paths
    folder = tmp_path / "models" / "blockdance"
    folder.mkdir(parents=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "blockdance", ([str(folder)], set()))
    return folder


def listing(root):
    """Every path under root (files and folders), to compare before and after."""
    out = set()
    for base, dirs, files in os.walk(root):
        out.update(os.path.join(base, name) for name in dirs + files)
    return out


def toy_schedule_json(num_blocks=6, steps=10, width=128, family="wan"):
    return {"format": "blockdance-schedule", "version": 1, "name": "toy",
            "model": {"family": family, "num_blocks": num_blocks, "width": width},
            "target_speedup": 2.0, "predicted_speedup": 2.0, "predicted_error": 0.1, "calibration": {},
            "steps": [{"position": k / steps, "sigma": 1 - k / steps, "kind": ("cache", "reuse")[k % 2],
                       "cut": max(1, num_blocks - 1), "mode": "blockdance"} for k in range(steps)]}


# ------------------------------------------------------------------------------------ C1, C10
@pytest.mark.parametrize("prefix", ["../../escaped", "../escaped", "/tmp/bd_escaped", "a/../../escaped",
                                    "..\\..\\escaped", "sub/" + "x" * 300, "bad\x00name", "/".join("d" * 20)])
def test_unusable_prefixes_are_refused_before_any_file_is_written(pack, blockdance_folder, prefix):
    paths = pack_module(pack, "paths")
    root = blockdance_folder.parent.parent
    before = listing(root)
    with pytest.raises(ValueError, match="filename_prefix"):
        paths.save_path(prefix, ".json")
    assert paths.prefix_problem(prefix, ".json", required=True)
    assert listing(root) == before


def test_a_link_out_of_the_folder_is_refused(pack, blockdance_folder, tmp_path):
    paths = pack_module(pack, "paths")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, blockdance_folder / "link")
    with pytest.raises(ValueError, match="resolves outside models/blockdance"):
        paths.save_path("link/escaped", ".json")
    assert not list(outside.iterdir())
    assert paths.save_path("inside/ok", ".json") == str(blockdance_folder / "inside" / "ok_00001.json")


@pytest.mark.parametrize("node_id", ["BlockDanceCalibrate", "BlockDanceAdaTrain"])
def test_a_bad_prefix_fails_validation_and_before_any_sampling(pack, wan, blockdance_folder, monkeypatch, node_id):
    """C10: the node's validate_inputs names the input; execute checks it before the first run."""
    import comfy.sample
    cls = node(pack, node_id)
    assert "filename_prefix" in cls.validate_inputs(filename_prefix="../../x")
    assert cls.validate_inputs(filename_prefix="fine/name") is True
    monkeypatch.setattr(comfy.sample, "sample", lambda *a, **k: pytest.fail("sampled before the prefix was checked"))
    common = dict(seed=0, steps=4, cfg=1.0, sampler_name="euler", scheduler="simple", filename_prefix="x" * 300)
    with pytest.raises(ValueError, match="filename_prefix"):
        if node_id == "BlockDanceCalibrate":
            cls.execute(wan.patcher, wan.positive, wan.negative, wan.latent, mode="auto", target_speedup=1.5, **common)
        else:
            cls.execute(wan.patcher, wan.positive, wan.negative, wan.latent, budgets="2.0", rho=0.0, iterations=1,
                        rollouts=2, **common)


# ------------------------------------------------------------------------------------ C2, C6
@pytest.mark.parametrize("seed", [184461906879890, 2**50 + 12345, 2**64 - 1])
def test_ada_train_trains_at_any_seed_the_widget_accepts(pack, wan, blockdance_folder, seed):
    policy, report = node(pack, "BlockDanceAdaTrain").execute(
        wan.patcher, wan.positive, wan.negative, wan.latent, seed=seed, steps=4, cfg=1.0, sampler_name="euler",
        scheduler="simple", budgets="2.0", rho=0.0, iterations=1, rollouts=2, filename_prefix="seeds/ada").result
    assert "saved" in report and policy.meta.training["iterations"] == 1


def test_ada_train_refuses_a_rho_that_leaves_no_step_before_any_run(pack, wan, blockdance_folder, monkeypatch):
    import comfy.sample
    monkeypatch.setattr(comfy.sample, "sample", lambda *a, **k: pytest.fail("sampled before rho was checked"))
    with pytest.raises(ValueError, match=r"rho=0.95 leaves no step to decide at: with 10 steps of euler / simple"):
        node(pack, "BlockDanceAdaTrain").execute(
            wan.patcher, wan.positive, wan.negative, wan.latent, seed=1, steps=10, cfg=1.0, sampler_name="euler",
            scheduler="simple", budgets="2.0", rho=0.95, iterations=1, rollouts=2, filename_prefix="late/ada")


# ------------------------------------------------------------------------------------ C3
BAD_SCHEDULE_FILES = {
    "latin1.json": (b'{"format": "blockdance-schedule", "name": "caf\xe9"}', "not UTF-8 text"),
    "deep.json": (b"[" * 100000 + b"]" * 100000, "nested too deep"),
    "deep_small.json": (b'{"format": "blockdance-schedule", "calibration": ' + b"[" * 20 + b"]" * 20 + b"}",
                        "nested deeper than 8 levels"),
    "huge_float.json": (json.dumps(toy_schedule_json()).replace('"target_speedup": 2.0', '"target_speedup": 1e400')
                        .encode(), "out of the range of a float"),
    "long_int.json": (json.dumps(toy_schedule_json()).replace('"num_blocks": 6', '"num_blocks": ' + "9" * 5000)
                      .encode(), "an integer of 5000 digits"),
    "nan.json": (json.dumps(toy_schedule_json()).replace('"predicted_error": 0.1', '"predicted_error": NaN')
                 .encode(), "NaN is not a number"),
    "no_blocks.json": (json.dumps(toy_schedule_json(num_blocks=0)).encode(), "model.num_blocks is 0"),
    "unsorted.json": (json.dumps({**toy_schedule_json(), "steps": toy_schedule_json()["steps"][::-1]}).encode(),
                      "kind is 'reuse'|comes before step"),
    "wrong_types.json": (json.dumps(toy_schedule_json()).replace('"cut": 5', '"cut": "5"').encode(),
                         r"steps\[0\].cut is '5'"),
}


@pytest.mark.parametrize("name", sorted(BAD_SCHEDULE_FILES))
def test_malformed_schedule_files_name_the_file_and_what_is_wrong(pack, blockdance_folder, name):
    data, why = BAD_SCHEDULE_FILES[name]
    (blockdance_folder / name).write_bytes(data)
    with pytest.raises(core(pack, "schedule").ScheduleError, match=why) as err:
        node(pack, "BlockDanceScheduleLoader").execute(name)
    assert str(blockdance_folder / name) in str(err.value)


def test_an_oversized_schedule_file_is_refused_unread(pack, blockdance_folder):
    with open(blockdance_folder / "big.json", "wb") as f:
        f.truncate(5 * 2**20)
    with pytest.raises(core(pack, "schedule").ScheduleError, match="big.json: 5242880 bytes; a schedule is at most"):
        node(pack, "BlockDanceScheduleLoader").execute("big.json")


# ------------------------------------------------------------------------------------ C5, C8
def write_policy(path, meta_changes=None, tensors=None, raw_meta=None):
    from safetensors.torch import save_file
    ada = sys.modules[[m for m in sys.modules if m.endswith("blockdance_core.ada")][0]]
    meta = ada.AdaMeta("wan", 6, 16, 32, 0.0, 3, "delta", 2.0, (1.5, 2.0))
    net = ada.AdaNet(16, 32, 64)
    data = {k: v.contiguous() for k, v in net.state_dict().items()} if tensors is None else tensors
    fields = {**json.loads(meta.to_metadata()["meta"]), **(meta_changes or {})}
    save_file(data, str(path), metadata={"format": "blockdance-ada", "meta": raw_meta or json.dumps(fields)})


@pytest.mark.parametrize("changes, why", [
    ({"hidden": 2**24}, r"hidden is 16777216; it must be an integer in \[1, 4096\]"),
    ({"hidden": 2048}, r"tensor 'plan.0.weight' is F32 \[64, 4\]; .* needs a float tensor of shape \[2048, 4\]"),
    ({"cond_width": 10**9}, "cond_width is 1000000000"),
    ({"cut": 0}, r"cut is 0; it must be an integer in \[1, 6\]"),
    ({"cut": 99}, r"cut is 99; it must be an integer in \[1, 6\]"),
    ({"cut": -3}, "cut is -3"),
    ({"mode": "foo"}, "mode is 'foo'; allowed: 'blockdance', 'delta'"),
    ({"rho": 2.0}, r"rho is 2.0; it must be a finite number in \[0, 1\)"),
    ({"rho": float("nan")}, "NaN is not a number"),
    ({"budgets": [0.5]}, r"budgets\[0\] is 0.5"),
    ({"family": ["wan"]}, "family is"),
    ({"extra": 1}, "unknown fields"),
])
def test_policy_metadata_is_checked_before_anything_is_built(pack, blockdance_folder, changes, why):
    path = blockdance_folder / "bad.safetensors"
    write_policy(path, changes)
    started = time.perf_counter()
    with pytest.raises(core(pack, "ada").AdaError, match=why) as err:
        node(pack, "BlockDanceAdaLoader").execute("bad.safetensors")
    assert str(path) in str(err.value) and time.perf_counter() - started < 2.0


def test_policy_tensors_must_match_their_names(pack, blockdance_folder):
    write_policy(blockdance_folder / "bad.safetensors", tensors={"projection": torch.zeros(32, 16)})
    with pytest.raises(core(pack, "ada").AdaError, match=r"tensors do not match .*\(missing"):
        node(pack, "BlockDanceAdaLoader").execute("bad.safetensors")


# ------------------------------------------------------------------------------------ C9
def test_a_schedule_for_blocks_of_another_width_is_refused(pack, wan):
    """Refused when patching (issue 16 item 4), naming both sides; the first forward checks again."""
    calibrated = core(pack, "schedule")
    schedule = calibrated.Schedule.from_json(toy_schedule_json(num_blocks=6, width=64), "toy.json")
    with pytest.raises(calibrated.ScheduleError, match="measured on wan, 6 blocks, width 64; this model is wan, "
                                                       "6 blocks, width 128"):
        node(pack, "BlockDancePatch").execute(wan.patcher, "blockdance", 0.75, 2, 0.4, 0.95, schedule=schedule)
    run = calibrated.SchedulePolicy(schedule).start(core(pack, "timeline").Timeline.build([1.0, 0.5, 0.0]), 6)
    with pytest.raises(calibrated.ScheduleError, match="measured on blocks 64 wide; this model's are 128 wide"):
        run.decide(core(pack, "policy").Observation(0, None, block_input=torch.zeros(1, 4, 128)))


def test_a_policy_for_another_conditioning_width_is_refused(pack, wan, blockdance_folder):
    """Refused when patching, naming both sides; a forward with another conditioning still refuses."""
    width = wan.positive[0][0].shape[-1]
    write_policy(blockdance_folder / "other.safetensors", {"cond_width": width + 8, "latent_channels": 16},
                 tensors=None if width + 8 == 32 else _net_tensors(pack, 16, width + 8))
    (policy,) = node(pack, "BlockDanceAdaLoader").execute("other.safetensors").result
    with pytest.raises(core(pack, "ada").AdaError, match=f"latent channels 16, conditioning width {width + 8}; "
                                                          f"this model is wan, 6 blocks, width 128, latent channels "
                                                          f"16, conditioning width {width}"):
        node(pack, "BlockDancePatch").execute(wan.patcher, "blockdance", 0.75, 2, 0.4, 0.95, policy=policy,
                                              target_speedup=2.0)
    with pytest.raises(core(pack, "ada").AdaError, match=f"reads conditioning {width + 8} wide; this model's "
                                                          f"conditioning is {width} wide"):
        core(pack, "ada").cond_features(torch.zeros(1, 4, width), 1, width + 8, "other")


def _net_tensors(pack, channels, cond_width):
    net = core(pack, "ada").AdaNet(channels, cond_width, 64)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------------------------ the server rows
@pytest.fixture(scope="module")
def server(comfy, tiny, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("redteam"))
    srv = bd_server.ComfyServer(comfy, base)
    models = bd_server.write_tiny_models(tiny, srv.models_dir, base, families={"sd3"})
    assert models
    long_steps = 10000
    big = toy_schedule_json(num_blocks=24, steps=long_steps)
    with open(os.path.join(srv.schedules_dir, "long.json"), "w") as f:
        json.dump(big, f)
    with open(os.path.join(srv.schedules_dir, "other_model.json"), "w") as f:
        json.dump(toy_schedule_json(num_blocks=6, width=64), f)   # a Wan schedule: the server has a tiny SD3
    with open(os.path.join(srv.schedules_dir, "other_latent.json"), "w") as f:
        data = toy_schedule_json(num_blocks=4, width=256, family="sd3")   # the tiny SD3, but 4 latent channels
        json.dump({**data, "model": {**data["model"], "latent_channels": 4, "cond_width": 4096}}, f)
    write_policy(os.path.join(srv.schedules_dir, "other_model.safetensors"))   # a Wan policy
    for name, (data, _) in BAD_SCHEDULE_FILES.items():
        with open(os.path.join(srv.schedules_dir, name), "wb") as f:
            f.write(data)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def http(server, method, path, body=None, timeout=60):
    req = urllib.request.Request(server.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def sd3_prompt(extra_nodes, client_prefix="bd"):
    graph = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_sd3.safetensors", "weight_dtype": "default"}},
        "cond": {"class_type": "LoadTrainingDataset", "inputs": {"folder_name": bd_server.conditioning_folder("sd3")}},
        "zero": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["cond", 1]}},
        "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }
    graph.update(extra_nodes)
    return graph


def sampled_and_saved(model_node: str, steps: int) -> dict:
    """A KSampler on the patched model and a SaveLatent of its output, for sd3_prompt."""
    return {"ks": {"class_type": "KSampler", "inputs": {
                "model": [model_node, 0], "seed": 3, "steps": steps, "cfg": 2.0, "sampler_name": "euler",
                "scheduler": "simple", "positive": ["cond", 1], "negative": ["zero", 0],
                "latent_image": ["latent", 0], "denoise": 1.0}},
            "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0],
                                                            "filename_prefix": f"latents/{uuid.uuid4().hex}"}}}


def calibrate_node(prefix):
    return {"cal": {"class_type": "BlockDanceCalibrate", "inputs": {
        "model": ["unet", 0], "positive": ["cond", 1], "negative": ["zero", 0], "latent_image": ["latent", 0],
        "seed": 1, "steps": 4, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple", "mode": "auto",
        "target_speedup": 1.5, "filename_prefix": prefix}}}


@pytest.mark.parametrize("prefix", ["../../escaped_bd", "/tmp/escaped_bd_abs", "x/../../../escaped_bd"])
def test_prompts_with_an_escaping_prefix_are_refused_and_write_nothing(server, prefix):
    """C1 over HTTP: POST /prompt is refused at validation, naming filename_prefix; nothing is written
    anywhere under the server's folders, their parents or /tmp."""
    watched = [os.path.dirname(server.base), "/tmp"]
    before = [listing(p) if p != "/tmp" else set(os.listdir(p)) for p in watched]
    status, body = http(server, "POST", "/prompt", {"prompt": sd3_prompt(calibrate_node(prefix)),
                                                    "client_id": "redteam"})
    assert status == 400 and "filename_prefix" in body, body[:500]
    time.sleep(0.5)
    after = [listing(p) if p != "/tmp" else set(os.listdir(p)) for p in watched]
    new = [sorted(a - b) for a, b in zip(after, before)]
    assert not any("escaped_bd" in path for paths in new for path in paths), new


@pytest.mark.parametrize("name", sorted(BAD_SCHEDULE_FILES))
def test_plan_route_answers_400_for_malformed_schedules(server, name):
    status, body = http(server, "GET", "/blockdance/plan?" + urllib.parse.urlencode({"schedule_name": name, "steps": 20}))
    assert status == 400 and json.loads(body)["error"].startswith(f"schedule_name={name!r}"), body[:300]


@pytest.mark.parametrize("query, why", [
    ({"mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95, "steps": 20,
      "denoise": 1e-306}, "denoise=1e-306 with steps=20"),
    ({"schedule_name": "no_blocks.json", "steps": 20}, "model.num_blocks is 0"),
    ({"mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.4, "end_percent": 0.95, "steps": 10**6},
     "steps=1000000 is outside the allowed range"),
])
def test_plan_route_bad_parameters_are_400s_naming_them(server, query, why):
    status, body = http(server, "GET", "/blockdance/plan?" + urllib.parse.urlencode(query))
    assert status == 400 and why in json.loads(body)["error"], body[:300]


def test_worst_case_previews_never_stall_the_server(server):
    """C4: 20 concurrent previews of a 10,000-step schedule at 10,000 steps, while /queue is polled:
    no /queue answer takes 1 s or more, and every preview is answered (200, or 429 'retry')."""
    query = "/blockdance/plan?" + urllib.parse.urlencode({"schedule_name": "long.json", "steps": 10000})
    status, body = http(server, "GET", query)
    assert status == 200 and json.loads(body)["num_steps"] == 10000
    statuses, latencies, done = [], [], threading.Event()

    def preview():
        statuses.append(http(server, "GET", query, timeout=120)[0])

    def poll():
        while not done.is_set():
            started = time.perf_counter()
            assert http(server, "GET", "/queue")[0] == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    workers = [threading.Thread(target=preview) for _ in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    poller.join()
    print(f"C4: {statuses.count(200)} previews answered, {statuses.count(429)} told to retry; /queue polled "
          f"{len(latencies)} times, slowest {max(latencies) * 1000:.0f} ms")
    assert len(statuses) == 20 and set(statuses) <= {200, 429} and 200 in statuses
    assert len(latencies) >= 5 and max(latencies) < 1.0, max(latencies)


def test_schedules_are_parsed_once_per_file_version(pack, blockdance_folder, monkeypatch):
    routes, calibrated = pack_module(pack, "routes"), core(pack, "schedule")
    path = blockdance_folder / "cached.json"
    path.write_text(json.dumps(toy_schedule_json()))
    loads, real = [], calibrated.Schedule.load.__func__
    monkeypatch.setattr(calibrated.Schedule, "load", classmethod(lambda cls, p: loads.append(p) or real(cls, p)))
    query = {"schedule_name": "cached.json", "steps": "20"}
    first = routes.preview(query)
    assert routes.preview(query) == first and len(loads) == 1
    data = toy_schedule_json()
    data["steps"][1]["kind"] = "full"
    path.write_text(json.dumps(data, indent=2))   # a new version of the file (another size)
    assert routes.preview(query) != first and len(loads) == 2


LOADERS = {"schedule": ("BlockDanceScheduleLoader", "schedule_name"), "policy": ("BlockDanceAdaLoader", "policy_name")}


@pytest.mark.parametrize("loader, file, wanted", [
    ("schedule", "other_model.json", "measured on wan, 6 blocks, width 64"),
    ("schedule", "other_latent.json", "measured on sd3, 4 blocks, width 256, latent channels 4, conditioning width "
                                      "4096; this model is sd3, 4 blocks, width 256, latent channels 16, "
                                      "conditioning width 4096"),
    ("policy", "other_model.safetensors", "trained for wan, 6 blocks, latent channels 16, conditioning width 32"),
])
def test_a_schedule_or_policy_for_another_model_is_refused_when_patching(server, loader, file, wanted):
    """Issue 16 item 4 over HTTP: a Wan schedule or policy on the tiny SD3, or a schedule for the tiny
    SD3's blocks but another latent (channels), fails the prompt at BlockDance Patch, before the
    KSampler runs; the error names both models."""
    class_type, input_name = LOADERS[loader]
    source = {"load": {"class_type": class_type, "inputs": {input_name: file}}}
    graph = sd3_prompt({**source,
                        "bd": {"class_type": "BlockDancePatch", "inputs": {
                            "model": ["unet", 0], "mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.0,
                            "end_percent": 1.0, loader: ["load", 0]}},
                        **sampled_and_saved("bd", steps=4)})
    prompt_id = server.post("/prompt", {"prompt": graph, "client_id": "refusal"})["prompt_id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        entry = server.get(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry["status"].get("completed") is not None:
            break
        time.sleep(0.2)
    status = entry["status"]
    assert status["status_str"] == "error", status
    (error,) = [data for kind, data in status["messages"] if kind == "execution_error"]
    assert error["node_id"] == "bd" and error["node_type"] == "BlockDancePatch", {k: error[k] for k in ("node_id", "exception_message")}
    assert wanted in error["exception_message"] and "this model is sd3, " in error["exception_message"], error


def test_the_run_event_goes_only_to_the_client_that_queued_the_prompt(server):
    """C11: two clients on one server; the run of A's prompt is sent to A, with A's prompt id, and
    B hears nothing of it."""
    import aiohttp
    patch = {"bd": {"class_type": "BlockDancePatch", "inputs": {
        "model": ["unet", 0], "mode": "blockdance", "depth": 0.75, "N": 2, "start_percent": 0.0, "end_percent": 1.0}}}
    graph = sd3_prompt({**patch, **sampled_and_saved("bd", steps=6)})
    a, b = uuid.uuid4().hex, uuid.uuid4().hex

    async def listen(ws, events, stop):
        while not stop.is_set():
            try:
                msg = await ws.receive(timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                events.append({"type": "binary", "data": bytes(msg.data)})
            else:   # closed or failed: receive() would answer at once forever and starve the loop
                return

    async def run():
        events = {a: [], b: []}
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            ws_url = server.url.replace("http", "ws")
            async with session.ws_connect(f"{ws_url}/ws?clientId={a}") as wa, \
                    session.ws_connect(f"{ws_url}/ws?clientId={b}") as wb:
                tasks = [asyncio.ensure_future(listen(wa, events[a], stop)),
                         asyncio.ensure_future(listen(wb, events[b], stop))]
                loop = asyncio.get_running_loop()
                prompt_id = (await loop.run_in_executor(None, server.post, "/prompt",
                                                        {"prompt": graph, "client_id": a}))["prompt_id"]
                await loop.run_in_executor(None, server.wait_prompt, prompt_id)
                await asyncio.sleep(1.0)
                stop.set()
                await asyncio.gather(*tasks)
        return prompt_id, events

    prompt_id, events = asyncio.run(run())
    mine = [e["data"] for e in events[a] if e.get("type") == "blockdance.run"]
    assert len(mine) == 1 and mine[0]["prompt_id"] == prompt_id and mine[0]["node"] == "bd"
    assert not [e for e in events[b] if e.get("type") == "blockdance.run"]
    assert not [e for e in events[b] if e.get("type") == "binary" and b"BlockDance" in e["data"]]
    assert [e for e in events[a] if e.get("type") == "binary" and b"reused" in e["data"]]
