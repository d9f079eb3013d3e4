"""Comfy Registry readiness, judged by comfy-cli itself (PyPI `comfy-cli`, the tool `comfy node
publish` runs): `comfy node validate` passes with no warning about shipped code, its own pyproject
parser reads every field the Registry shows, the node description names the models users know, and
the package it builds (git-tracked files minus .comfyignore) holds the pack and nothing test-only.

A host test: CI installs comfy-cli (.ci/run) and fails if this skips. comfy-cli lives in its own
virtual environment (BLOCKDANCE_COMFY_CLI names its `comfy`, else ~/.cache/blockdance/comfy-cli or PATH)
so its dependencies never touch ComfyUI's.
"""
import ast
import json
import os
import re
import shutil
import subprocess
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CLI = os.path.join(os.environ.get("BLOCKDANCE_CACHE", os.path.expanduser("~/.cache/blockdance")),
                           "comfy-cli", "bin", "comfy")
SHIPPED = ["__init__.py", "pyproject.toml", "README.md", "LICENSE", "icon.png", "nodes/patch_node.py",
           "nodes/routes.py", "blockdance_core/engine.py", "web/blockdance.js", "web/js/strip.js", "web/js/graph.js",
           "example_workflows/Flux.1 image with BlockDance.json", "example_workflows/Flux.1 image with BlockDance.jpg",
           "assets/screenshot_node.png"]
NOT_SHIPPED = ("benchmarks/", "tests/", "docs/", "out/", "scripts/", ".ci/", "CONTRIBUTING.md")
# A markdown link or image: [text](target) / ![alt](target); the README links to what does not ship
# (docs/, CONTRIBUTING.md) by its repository URL, so every relative target must be in the package.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")

# Run inside comfy-cli's own Python: its pyproject parser, its .comfyignore matcher and its packer.
PROBE = r"""
import dataclasses, json, sys
from comfy_cli.registry.config_parser import extract_node_configuration
from comfy_cli.file_utils import _load_comfyignore_spec, zip_files
def plain(o):   # dataclasses holding tomlkit items -> JSON
    if dataclasses.is_dataclass(o):
        return {f.name: plain(getattr(o, f.name)) for f in dataclasses.fields(o)}
    o = o.unwrap() if hasattr(o, "unwrap") else o
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    return [plain(v) for v in o] if isinstance(o, (list, tuple)) else o
config = extract_node_configuration(sys.argv[1])
zip_files(sys.argv[2], includes=config.tool_comfy.includes)
spec = _load_comfyignore_spec()
print("PROBE" + json.dumps({"config": plain(config),
                            "ignored": {p: bool(spec and spec.match_file(p)) for p in sys.argv[3:]}}))
"""


def comfy_cli():
    for candidate in (os.environ.get("BLOCKDANCE_COMFY_CLI"), DEFAULT_CLI, shutil.which("comfy")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def cli():
    path = comfy_cli()
    if path is None:
        pytest.skip("comfy-cli not found: python -m venv ~/.cache/blockdance/comfy-cli && "
                    "~/.cache/blockdance/comfy-cli/bin/pip install comfy-cli (or set BLOCKDANCE_COMFY_CLI)")
    with open(path) as f:
        python = f.readline()[2:].strip()    # the console script's interpreter: comfy-cli's own venv
    return path, python


def run(args, **kwargs):
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def validate(cli):
    result = run([cli[0], "--skip-prompt", "--no-enable-telemetry", "node", "validate"])
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def probe(cli, validate, tmp_path_factory):
    flagged = sorted(set(re.findall(r"-->\s+(\S+?):\d+:\d+", validate[1])))
    package = str(tmp_path_factory.mktemp("registry") / "node.zip")
    result = run([cli[1], "-c", PROBE, os.path.join(ROOT, "pyproject.toml"), package, *flagged])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.split("PROBE", 1)[1])
    with zipfile.ZipFile(package) as z:
        data["files"] = {i.filename: i.file_size for i in z.infolist()}
    return data


def test_comfy_node_validate_passes(validate, probe):
    code, output = validate
    assert code == 0 and "Validating node configuration" in output, output[-3000:]
    assert "Warning" not in output and "Error" not in output, output[-3000:]
    # Its security scan (exec / eval / several statements on a line) may only flag files that do not ship.
    assert all(probe["ignored"].values()), {p: i for p, i in probe["ignored"].items() if not i}


def test_registry_fields(probe):
    project, comfy = probe["config"]["project"], probe["config"]["tool_comfy"]
    assert re.fullmatch(r"[a-z][a-z0-9]*(?:[._-][a-z0-9]+)*", project["name"]) and "comfyui" not in project["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"]["file"] == "LICENSE"
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert f.readline().strip() == "MIT License"
    assert project["urls"]["repository"].startswith("https://github.com/") and project["urls"]["issues"]
    assert project["supported_os"] == ["OS Independent"] and project["supported_accelerators"]
    assert project["supported_comfyui_version"] == ">=0.8.0"      # comfy-cli blanks a malformed one
    assert comfy["publisher_id"] and comfy["display_name"] == "BlockDance"


def test_icon_is_in_the_repository(probe):
    icon = probe["config"]["tool_comfy"]["icon"]
    repo = probe["config"]["project"]["urls"]["repository"].replace("https://github.com/", "")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert icon.startswith(prefix)
    from PIL import Image
    with Image.open(os.path.join(ROOT, icon[len(prefix):])) as image:   # Registry: PNG/JPG/SVG/GIF, <= 800 x 400
        assert image.format == "PNG" and image.width <= 800 and image.height <= 400 and image.width == image.height


def test_description_names_the_models_users_know(probe):
    """Every family nodes/patch_node.py supports (MODEL_NAMES) is named in the Registry description."""
    with open(os.path.join(ROOT, "nodes", "patch_node.py")) as f:
        tree = ast.parse(f.read())
    (names,) = [ast.literal_eval(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "MODEL_NAMES" for t in node.targets)]
    description = probe["config"]["project"]["description"]
    missing = [entry for entry in names.split(", ") if re.split(r"[ /(-]", entry)[0] not in description]
    assert not missing, missing


def test_package_holds_the_pack_and_nothing_test_only(probe):
    files = probe["files"]
    assert [f for f in SHIPPED if f not in files] == []
    assert [f for f in files if f.startswith(NOT_SHIPPED)] == []
    assert sum(files.values()) < 2 * 2**20, sorted(files.items(), key=lambda kv: -kv[1])[:5]


def test_every_relative_link_and_image_of_the_readme_is_in_the_package(probe):
    files = probe["files"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        targets = [t.split("#")[0] for t in LINK.findall(f.read()) if not re.match(r"[a-z]+:|#", t)]
    assert any(t.endswith(".png") for t in targets), targets   # the screenshot, at least
    missing = [t for t in targets if t not in files and not any(f.startswith(t.rstrip("/") + "/") for f in files)]
    assert missing == [], missing
