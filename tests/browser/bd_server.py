"""A real ComfyUI server for the workflow and browser tests.

It loads this pack (by the folder name users install it under) and the test-only `sizes_pack`, and
its model folders hold tiny random-weight models of every example workflow's family plus saved
conditioning per family (read by ComfyUI's stock LoadTrainingDataset node) standing in for the
multi-GB text encoders. Everything lives in one temporary folder; the ComfyUI checkout is untouched.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from benchmarks.comfy_env import PACK_ROOT

PACK_DIR_NAME = "ComfyUI-BlockDance"
SIZES_PACK = "blockdance_test_sizes"
SIZES_PACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sizes_pack")
EXAMPLES = os.path.join(PACK_ROOT, "example_workflows")

# Tiny model files: name -> (tiny_models family, seed). Families stock detection reads back from the
# weights are saved by tiny_models.save_checkpoint; the others carry their config for sizes_pack.
TINY_FILES = {
    "tiny_flux.safetensors": ("flux", 0),
    "tiny_sd3.safetensors": ("sd3", 0),
    "tiny_wan21.safetensors": ("wan21", 0),
    "tiny_wan21_low_noise.safetensors": ("wan21", 1),
    "tiny_hunyuan_video.safetensors": ("hunyuan_video", 0),
    "tiny_ltxv.safetensors": ("ltxv", 0),
    "tiny_qwen_image.safetensors": ("qwen_image", 0),
    "tiny_pixart_sigma.safetensors": ("pixart_sigma", 0),
}
BUILD_SIZE = {"pixart_sigma": 272}   # tiny_models refuses smaller PixArt images


LEVEL_TAG = re.compile(r"^(?:\x1b\[[0-9;]*m)?\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\](?:\x1b\[[0-9;]*m)? ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conditioning_folder(family: str) -> str:
    """LoadTrainingDataset's folder_name (see dataset_root) for a family's conditioning."""
    return f"tiny_cond_{family}"


def has_datasets_folder() -> bool:
    """Whether the running core has a `datasets` folder type, where LoadTrainingDataset then looks (it
    lists only folders there holding a metadata.json or .safetensors; older cores read the output
    directory)."""
    import folder_paths
    return "datasets" in folder_paths.folder_names_and_paths


def dataset_root(base: str) -> str:
    """Where LoadTrainingDataset finds its folders for a ComfyServer on `base`."""
    return os.path.join(base, "datasets" if has_datasets_folder() else "output")


def write_conditioning(base: str, folder_name: str, latent: dict, conditioning: list) -> None:
    """One LoadTrainingDataset shard (one latent, one CONDITIONING) as `folder_name` for a ComfyServer on
    `base`, with the metadata.json a datasets folder needs to be listed."""
    import torch
    folder = os.path.join(dataset_root(base), folder_name)
    os.makedirs(folder, exist_ok=True)
    torch.save({"latents": [latent], "conditioning": [conditioning]}, os.path.join(folder, "shard_0.pkl"))
    with open(os.path.join(folder, "metadata.json"), "w") as f:
        json.dump({"num_samples": 1, "num_shards": 1, "shard_size": 1}, f)


def write_tiny_models(tiny, models_dir: str, base: str, families=None) -> dict:
    """Write the tiny model files and each family's conditioning shard; returns {file: family}."""
    import safetensors.torch
    import torch

    written = {}
    for name, (family, seed) in TINY_FILES.items():
        if families is not None and family not in families:
            continue
        path = os.path.join(models_dir, name)
        size = BUILD_SIZE.get(family, 64)
        if family in tiny.CHECKPOINT_FAMILIES:
            tiny.save_checkpoint(family, path, seed=seed)
            model = tiny.build(family, seed=seed, width=size, height=size) if seed == 0 else None
        else:
            model = tiny.build(family, seed=seed, width=size, height=size)
            weights = model.patcher.model.diffusion_model.state_dict()
            safetensors.torch.save_file({k: v.detach().contiguous().clone() for k, v in weights.items()}, path,
                                        metadata={"tiny_dit_overrides": json.dumps(model.unet_config)})
        if model is not None:
            write_conditioning(base, conditioning_folder(family), model.latent, model.positive)
        written[name] = family
    return written


class ComfyServer:
    """`python main.py --cpu` on a free port with this pack and the test-only sizes pack."""

    def __init__(self, comfy_root: str, base: str, extra_args=(), settings=None):
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output_dir = os.path.join(base, "output")
        self.models_dir = os.path.join(base, "models")
        self.schedules_dir = os.path.join(base, "blockdance")
        user_dir = os.path.join(base, "user")
        for d in ("custom_nodes", "input", "temp", self.models_dir, self.output_dir, self.schedules_dir,
                  os.path.join(user_dir, "default")):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        if settings:   # the frontend's settings, read when the page loads (e.g. no first-run dialogs)
            with open(os.path.join(user_dir, "default", "comfy.settings.json"), "w") as f:
                json.dump(settings, f)
        for name, target in ((PACK_DIR_NAME, PACK_ROOT), (SIZES_PACK, SIZES_PACK_DIR)):
            link = os.path.join(base, "custom_nodes", name)
            if not os.path.islink(link):
                os.symlink(target, link)
        config = os.path.join(base, "extra_model_paths.yaml")
        with open(config, "w") as f:
            f.write(f"blockdance_test:\n  base_path: {base}\n  custom_nodes: custom_nodes\n"
                    f"  diffusion_models: models\n  blockdance: blockdance\n"
                    + ("  datasets: datasets\n" if has_datasets_folder() else ""))
        self.log_path = os.path.join(base, "server.log")
        self._log_file = open(self.log_path, "w")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch", "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
             "--extra-model-paths-config", config, "--output-directory", self.output_dir,
             "--user-directory", user_dir, "--temp-directory", base, "--input-directory", os.path.join(base, "input"),
             "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_DIR_NAME, SIZES_PACK, *extra_args],
            cwd=comfy_root, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path, data):
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:
            raise AssertionError(f"POST {path} -> {err.code}: {err.read().decode()[:3000]}") from None

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited early:\n{self.log()[-3000:]}")
            try:
                return self.get("/system_stats")
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-3000:]}")

    def wait_prompt(self, prompt_id, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] == "success":
                    return entry
                raise AssertionError(f"prompt failed: {json.dumps(entry['status'])[:4000]}")
            time.sleep(0.2)
        raise AssertionError(f"prompt did not finish within {timeout}s")

    def run_prompt(self, prompt, client_id="blockdance-test", timeout=180):
        prompt_id = self.post("/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]
        return self.wait_prompt(prompt_id, timeout)

    def run_prompt_with_events(self, prompt, timeout=180):
        """Run a prompt while listening on the websocket; returns (history entry, the data of every
        `blockdance.run` event it sent, in order)."""
        import asyncio
        import uuid

        import aiohttp

        client_id = uuid.uuid4().hex

        async def run():
            events = []
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}") as ws:
                    prompt_id = self.post("/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]
                    deadline = time.time() + timeout
                    while time.time() < deadline:
                        try:
                            msg = await ws.receive(timeout=1)
                        except asyncio.TimeoutError:
                            continue
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(msg.data)
                        if data["type"] == "blockdance.run":
                            events.append(data["data"])
                        elif data["type"] in ("execution_success", "execution_error", "execution_interrupted") \
                                and data["data"].get("prompt_id") == prompt_id:
                            break
                    return self.wait_prompt(prompt_id, timeout=30), events

        return asyncio.run(run())

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def log_lines(self):
        """The server log's lines as the logged messages: without the level tag newer cores put before each
        one (core 0.23 on: "[INFO] ", coloured on a terminal), where there is one."""
        return [LEVEL_TAG.sub("", line, count=1) for line in self.log().splitlines()]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()
