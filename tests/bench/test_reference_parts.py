"""The benchmark's pure-torch parts: the image<->latent maps, the reference-model registry,
metrics and the digit classifier."""
import json
import math
import os
import re

import pytest
import torch

from benchmarks.metrics import psnr_per_image, ssim
from benchmarks.reference import data, models
from benchmarks.reference import model as wan_ref
from benchmarks.reference.classifier import WEIGHTS as CLASSIFIER_WEIGHTS, frechet_distance, load


def test_latent_map_is_invertible_and_wan_shaped():
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    latent = data.to_latent(images)
    assert latent.shape == (5, 16, 1, 8, 8)
    assert torch.equal(data.from_latent(latent), images)
    assert torch.equal(data.from_latent(latent[:, :, 0]), images)


def test_hunyuan_latent_map_is_invertible_and_hunyuan_image21_shaped():
    """pad to 32x32, pixel-unshuffle by 8: 64 channels x 4x4 = 16 tokens at patch 1x1."""
    spec = models.HUNYUAN_IMAGE21
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    latent = spec.to_latent(images)
    assert latent.shape == (5, *spec.latent_shape) == (5, 64, 4, 4)
    assert torch.equal(spec.from_latent(latent), images)
    # each latent pixel holds one 8x8 patch of the padded image, channel = row * 8 + column
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), value=-1.0)
    assert torch.equal(latent[:, 8 * 3 + 5, 1, 2], padded[:, 0, 8 + 3, 16 + 5])


def test_registry_describes_both_models_and_keeps_the_wan_names():
    assert set(models.MODELS) == {"wan21", "hunyuan_image21"} and models.DEFAULT == "wan21"
    wan, hunyuan = models.get("wan21"), models.get("hunyuan_image21")
    with pytest.raises(KeyError):
        models.get("flux")
    # the first entry is exactly the model.py / data.py names the benchmark has always used
    assert (wan.weights, wan.class_table, wan.unet_config, wan.shift, wan.null_class) == \
        (wan_ref.WEIGHTS, wan_ref.CLASS_TABLE, wan_ref.UNET_CONFIG, wan_ref.SHIFT, wan_ref.NULL_CLASS)
    assert wan.to_latent is data.to_latent and wan.from_latent is data.from_latent
    assert torch.equal(wan.make_class_contexts(), wan_ref.make_class_contexts())
    # they differ in family, block structure and sampling shift
    assert (wan.config_class, hunyuan.config_class) == ("WAN21_T2V", "HunyuanImage21")
    assert (wan.shift, hunyuan.shift) == (8.0, 5.0)
    assert wan.num_blocks == 24 and hunyuan.num_blocks == 18 >= 16
    assert hunyuan.block_containers == ("double_blocks", "single_blocks")
    assert hunyuan.unet_config["hidden_size"] == 128 and not hunyuan.unet_config["guidance_embed"]
    for spec in (wan, hunyuan):
        assert spec.to_latent(torch.zeros(2, 1, 28, 28)).shape == spec.empty_latent(2).shape
        table = spec.make_class_contexts()
        assert table.shape == (11, spec.context_tokens, spec.context_dim)
        assert not table[spec.null_class].any() and table[:spec.null_class].abs().min(2).values.all()
    assert hunyuan.context_dim == hunyuan.unet_config["context_in_dim"] == 3584


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_shipped_reference_files_match_the_registry(name):
    """What stock detection reads from the file (block indices under each container, the text and
    latent widths) is the registry's config; the class table is the one the model was trained on."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    spec = models.get(name)
    assert os.path.getsize(spec.weights) < 20_000_000
    with safe_open(spec.weights, framework="pt") as f:
        meta = json.loads(f.metadata()["blockdance_reference"])
        keys = list(f.keys())
    assert json.dumps(meta["unet_config"]) == json.dumps(spec.unet_config)
    for attr in spec.block_containers:
        indices = {int(m.group(1)) for k in keys if (m := re.match(rf"{attr}\.(\d+)\.", k))}
        assert indices == set(range(len(indices)))
    assert sum(len({k.split(".")[1] for k in keys if k.startswith(attr + ".")})
               for attr in spec.block_containers) == spec.num_blocks
    assert torch.equal(load_file(spec.class_table)["contexts"], spec.make_class_contexts())


def test_saved_tensor_copies_differentiate_in_place_residuals_exactly():
    """The pattern of ComfyUI's Flux-style blocks: a norm saves x, then x += f(norm(x)) twice."""
    torch.manual_seed(0)
    norm, lin = torch.nn.LayerNorm(8), torch.nn.Linear(8, 8)
    x0 = torch.randn(4, 8)

    def block(x, in_place):
        for _ in range(2):
            if in_place:
                x += lin(norm(x))
            else:
                x = x + lin(norm(x))
        return x.square().sum()

    reference = torch.autograd.grad(block(x0 * 1.0, False), list(lin.parameters()))
    with pytest.raises(RuntimeError, match="inplace"):
        block(x0 * 1.0, True).backward()
    with wan_ref.saved_tensor_copies():
        loss = block(x0 * 1.0, True)
    for got, want in zip(torch.autograd.grad(loss, list(lin.parameters())), reference):
        assert torch.allclose(got, want, atol=1e-6)


def test_psnr_and_ssim():
    a = torch.rand(3, 1, 28, 28) * 2 - 1
    b = a.clone()
    b[1] += 0.1
    psnr = psnr_per_image(b, a)
    assert math.isinf(psnr[0]) and math.isinf(psnr[2])
    assert psnr[1] == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-4)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(torch.rand(3, 1, 28, 28), a) < 0.5


def test_frechet_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    same = frechet_distance(a, b)
    shifted = frechet_distance(a, b + 1.0)
    assert shifted == pytest.approx(same + 8.0, abs=0.5) and same < 0.5


def test_shipped_classifier_recognises_held_out_digits():
    try:
        _, (test_x, test_y) = data.split(*data.load_mnist())
    except data.DatasetUnavailable as err:
        pytest.skip(str(err))
    assert os.path.isfile(CLASSIFIER_WEIGHTS)
    with torch.no_grad():
        accuracy = float((load()(test_x).argmax(1) == test_y).float().mean())
    assert accuracy >= 0.97
    assert len(test_y) == 500 and torch.bincount(test_y).tolist() == [50] * 10
