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


def choices(extension: str, empty: str) -> list:
    """A loader's combo: the files, or one entry saying why there are none yet (a frontend draws an
    empty list as "undefined")."""
    return list_files(extension) or [empty]


def choice_problem(name, extension: str, what: str) -> str:
    """Why a loader cannot load `name` (validation time, so the node is marked before anything runs)."""
    if name is None:   # linked: checked when it runs
        return ""
    files = list_files(extension)
    if name in files:
        return ""
    if not files:
        return f"no {what} in models/{FOLDER}/ yet ({extension}): {name}"
    return f"{what} {name!r} is not in models/{FOLDER}/; pick one of: {', '.join(files[:10])}"


def full_path(name: str) -> str:
    import folder_paths
    register()
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        raise FileNotFoundError(f"{name!r} is not in the {FOLDER} model folder(s): "
                                f"{', '.join(folder_paths.get_folder_paths(FOLDER))}")
    return path


MAX_PREFIX_CHARS = 200     # the whole prefix, subfolders included
MAX_NAME_BYTES = 200       # one file or folder name (file systems allow 255, the counter adds 6)
MAX_SUBFOLDERS = 8


def prefix_problem(prefix, extension: str, required: bool = False, folder: str = None) -> str:
    """Why `prefix` cannot name a file inside the blockdance folder ("" when it can), as ComfyUI's own
    savers refuse to write outside the output folder. Checked before any work, so a long calibration
    or training run never ends on a name it cannot save under."""
    if prefix is None:            # linked from another node: known only when the node runs
        return ""
    where = f"filename_prefix={prefix!r}"[:120]
    allowed = (f"a relative name like 'my_model/fast' inside models/{FOLDER}/: at most {MAX_PREFIX_CHARS} "
               f"characters, {MAX_SUBFOLDERS} subfolders, no '..', no absolute path")
    if not isinstance(prefix, str):
        return f"filename_prefix must be text: {allowed}"
    if not prefix.strip():
        return f"filename_prefix is empty; it is required here: {allowed}" if required else ""
    if len(prefix) > MAX_PREFIX_CHARS or any(ord(ch) < 32 or ch in '<>:"|?*' for ch in prefix):
        return f"{where} is too long or holds control or reserved characters; use {allowed}"
    parts = prefix.replace("\\", "/").split("/")
    if os.path.isabs(prefix) or prefix.startswith(("/", "\\")) or ".." in parts or "" in parts[:-1] \
            or not parts[-1] or len(parts) > MAX_SUBFOLDERS + 1:
        return f"{where} points outside models/{FOLDER}/ or is malformed; use {allowed}"
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        return f"{where} has a name over {MAX_NAME_BYTES} bytes; use {allowed}"
    if folder is not None and not _inside(folder, os.path.join(folder, *parts) + extension):
        return f"{where} resolves outside models/{FOLDER}/ (through a link); use {allowed}"
    return ""


def check_prefix(prefix, extension: str, required: bool = False) -> None:
    problem = prefix_problem(prefix, extension, required, _save_folder())
    if problem:
        raise ValueError(problem)


def _inside(folder: str, path: str) -> bool:
    root = os.path.realpath(folder)
    return os.path.commonpath((root, os.path.realpath(path))) == root


def _save_folder() -> str:
    import folder_paths
    register()
    return folder_paths.get_folder_paths(FOLDER)[0]


def save_path(prefix: str, extension: str) -> str:
    """A new file name in the first blockdance folder: <prefix>_00001<extension>, counting up; a
    prefix that would leave the folder is refused (prefix_problem)."""
    check_prefix(prefix, extension, required=True)
    folder = _save_folder()
    base = os.path.join(folder, *prefix.replace("\\", "/").split("/"))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    if not _inside(folder, base + extension):   # a link made while the run ran
        raise ValueError(f"filename_prefix={prefix!r} resolves outside models/{FOLDER}/")
    n = 1
    while os.path.exists(f"{base}_{n:05d}{extension}"):
        n += 1
    return f"{base}_{n:05d}{extension}"
