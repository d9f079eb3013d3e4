"""The `blockdance` model folder (models/blockdance/, also reachable through extra_model_paths.yaml),
where calibrated schedules (.json) and Ada policies (.safetensors) are saved and listed."""
from __future__ import annotations

import os

FOLDER = "blockdance"


def register() -> None:
    """models/blockdance, beside any folder extra_model_paths.yaml already gave (idempotent)."""
    import folder_paths
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def list_files(extension: str) -> list:
    import folder_paths
    register()
    return sorted(f for f in folder_paths.get_filename_list(FOLDER) if f.lower().endswith(extension))


def full_path(name: str) -> str:
    import folder_paths
    register()
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        raise FileNotFoundError(f"{name!r} is not in the {FOLDER} model folder(s): "
                                f"{', '.join(folder_paths.get_folder_paths(FOLDER))}")
    return path


def save_path(prefix: str, extension: str) -> str:
    """A new file name in the first blockdance folder: <prefix>_00001<extension>, counting up."""
    import folder_paths
    register()
    folder = folder_paths.get_folder_paths(FOLDER)[0]
    base = os.path.join(folder, prefix)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    n = 1
    while os.path.exists(f"{base}_{n:05d}{extension}"):
        n += 1
    return f"{base}_{n:05d}{extension}"
