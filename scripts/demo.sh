#!/usr/bin/env bash
# One command for a newcomer: set up the environment, get ComfyUI if needed, and sample a model
# with and without BlockDance, printing the speedup and the fidelity.
source "$(dirname "$0")/env.sh"
COMFYUI_REF="v0.8.0"
if [ -z "$COMFYUI_PATH" ]; then
  COMFYUI_PATH="$ROOT/.comfyui"
  if [ ! -f "$COMFYUI_PATH/main.py" ]; then
    echo "[blockdance] COMFYUI_PATH is unset; cloning ComfyUI $COMFYUI_REF into $COMFYUI_PATH"
    if ! git clone -q --depth 1 --branch "$COMFYUI_REF" https://github.com/comfyanonymous/ComfyUI "$COMFYUI_PATH"; then
      rm -rf "$COMFYUI_PATH"
      echo "[blockdance] ERROR: could not clone ComfyUI $COMFYUI_REF (offline?). Point COMFYUI_PATH at a" >&2
      echo "             ComfyUI checkout and run again: COMFYUI_PATH=/path/to/ComfyUI $0" >&2
      exit 2
    fi
  fi
  export COMFYUI_PATH
fi
install_comfyui_requirements
cd "$ROOT"
exec "$PY" -m benchmarks.demo "$@"
