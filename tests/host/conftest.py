"""Host tests run inside real ComfyUI, found through COMFYUI_PATH (or this pack sitting in
ComfyUI/custom_nodes/). Without it they skip, saying so; the pure-core tests always run."""
import pytest


@pytest.fixture(scope="session")
def comfy():
    from benchmarks.comfy_env import ComfyUIUnavailable, load_comfy
    try:
        return load_comfy()
    except ComfyUIUnavailable as err:
        pytest.skip(f"host test needs ComfyUI: {err}")


@pytest.fixture(scope="session")
def pack(comfy):
    from benchmarks.comfy_env import load_pack
    return load_pack()


@pytest.fixture(scope="session")
def tiny(comfy):
    from benchmarks import tiny_models
    return tiny_models
