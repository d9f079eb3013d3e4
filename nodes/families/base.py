"""How a model family exposes its block stack to BlockDance.

A family is a list of stages (e.g. Flux: 19 double blocks, then 38 single blocks) that together
form the block stack in execution order. Each stage names the container attribute on the
diffusion model, the `patches_replace["dit"]` key ComfyUI's forward looks up for its blocks, and
which hook arguments carry the hidden state. Families whose forward offers no block hook are
reached through a temporary swap of the block container (see nodes/swap.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import torch

from ...blockdance_core.policy import ModelFingerprint
from ..delivery import PatchDelivery, SwapDelivery


@dataclass(frozen=True)
class Stage:
    container: str                       # attribute path on the diffusion model, e.g. "double_blocks"
    replace_name: Optional[str] = None   # patches_replace["dit"] key name; None = container swap
    state_keys: Tuple[str, ...] = ("img",)  # hook args that carry the hidden state
    # Delta mode when the cache point lies in this stage: turns the block-0 input state into
    # this stage's layout (two-stage models concatenate the text and image streams).
    from_block0: Optional[Callable[[Any], Any]] = None
    # Container swap only: pull the state out of a block call, call a block on a new state (returning
    # a state), and turn a state into what the model's loop expects back from the block.
    swap_state: Optional[Callable[[tuple, dict], Any]] = None
    swap_call: Optional[Callable[[torch.nn.Module, Any, tuple, dict], Any]] = None
    swap_output: Optional[Callable[[Any], Any]] = None
    # Container swap only: the keyword parameters the swap functions read from a block call (checked
    # against the block's forward signature when patching).
    swap_params: Tuple[str, ...] = ()
    # False where the block-0 input cannot be mapped onto this stage's layout (delta mode then
    # needs the cache point in an earlier stage).
    delta_ok: bool = True

    def __post_init__(self):
        # How the stage's hooked blocks reach the run: the block hook, or the container swap.
        object.__setattr__(self, "delivery", PatchDelivery(self) if self.replace_name is not None else SwapDelivery(self))

    def block0_converter(self, transformer_options: Optional[dict]) -> Optional[Callable[[Any], Any]]:
        """from_block0 for the forward in flight: a converter that reads the forward's own layout marker
        (SingleStream) gets that forward's transformer_options."""
        convert = self.from_block0
        if isinstance(convert, SingleStream):
            return lambda state: convert(state, transformer_options)
        return convert


@dataclass(frozen=True)
class Family:
    name: str
    classes: Tuple[str, ...]             # "module.Class" of the diffusion models it serves
    stages: Tuple[Stage, ...]
    batch_dim: int = 0
    # Side branches a family runs inside the skipped range, outside the block hook: each a callable
    # (diffusion_model, run) -> context manager entered around every forward (Wan VACE: nodes/vace.py).
    side_branches: Tuple[Callable[[torch.nn.Module, Any], Any], ...] = field(default_factory=tuple)
    # Classes whose forward adds into the hidden state between blocks, outside the block hook (class
    # path -> what adds it): delta then sums the skipped blocks' own changes block by block.
    residuals_between_blocks: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)

    # Where the diffusion model says how wide its blocks and its conditioning input are: attribute
    # paths ("hidden_size", "txt_in.in_features"); a path that does not resolve to an int leaves the
    # field unchecked at patch time (the run-time checks remain).
    width_at: str = ""
    cond_width_at: str = ""

    def fingerprint(self, diffusion_model: torch.nn.Module, latent_channels: Optional[int]) -> ModelFingerprint:
        """The model as schedules and policies must fit it (checked when patching)."""
        return ModelFingerprint(self.name, len(self.blocks(diffusion_model)), _int_at(diffusion_model, self.width_at),
                                latent_channels, _int_at(diffusion_model, self.cond_width_at))

    @property
    def uses_swap(self) -> bool:
        return any(s.delivery.swaps for s in self.stages)

    def residual_reason(self, diffusion_model: torch.nn.Module) -> Optional[str]:
        paths = {f"{c.__module__}.{c.__qualname__}" for c in type(diffusion_model).__mro__}
        return next((why for path, why in self.residuals_between_blocks if path in paths), None)

    def block(self, diffusion_model: torch.nn.Module, stage: Stage, local: int) -> torch.nn.Module:
        return get_attr_path(diffusion_model, stage.container)[local]

    def blocks(self, diffusion_model: torch.nn.Module) -> List[Tuple[Stage, int]]:
        """(stage, index within stage) for every block, in execution order."""
        out = []
        for stage in self.stages:
            container = get_attr_path(diffusion_model, stage.container)
            out += [(stage, i) for i in range(len(container))] if container is not None else []
        return out


def delta_reaches(blocks: List[Tuple[Stage, int]], cut: int) -> bool:
    """Whether delta may keep the change of blocks 0..cut-1: the block-0 input maps onto the layout of
    block cut-1 (`blocks` as Family.blocks gives them)."""
    return blocks[cut - 1][0].delta_ok


def _int_at(obj: Any, path: str) -> Optional[int]:
    value = get_attr_path(obj, path) if path else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def get_attr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def cat_streams(first: str, second: str) -> Callable[[dict], dict]:
    """Block-0 input {img, txt} -> single-stream layout {"img": cat(first, second)}."""
    def join(state: dict) -> dict:
        return {"img": torch.cat((state[first], state[second]), dim=1)}
    return join


def first_arg(args: tuple, kwargs: dict) -> Any:
    return args[0]


def call_with_first_arg(block: torch.nn.Module, state: Any, args: tuple, kwargs: dict) -> Any:
    return block(state, *args[1:], **kwargs)


class LayoutError(RuntimeError):
    """The running core lays out a block stream in a way the family adapter does not know."""


@dataclass(frozen=True)
class SingleStream:
    """Block-0 input {img, txt} -> the single stream {"img": cat(...)} in the order this forward uses.

    Where the forward marks the image tokens' place in the single stream before its single blocks
    (transformer_options["img_slice"] = [start, end]: Flux and Chroma, and HunyuanVideo, which turned
    text first in core v0.14), the marker decides: [0, n_img] is image first, [n_txt, n_txt + n_img]
    text first, anything else raises LayoutError. A forward without the marker uses `default_first`.
    """
    family: str
    default_first: str                   # "img" or "txt": the order of a forward without the marker

    def order(self, state: dict, transformer_options: Optional[dict] = None) -> str:
        marker = (transformer_options or {}).get("img_slice")
        if marker is None:
            return self.default_first
        n_img, n_txt = int(state["img"].shape[1]), int(state["txt"].shape[1])
        start, end = (int(v) for v in marker)
        if (start, end) == (0, n_img):
            return "img"
        if (start, end) == (n_txt, n_txt + n_img):
            return "txt"
        raise LayoutError(f"{self.family}: the forward marks the image tokens of its single stream at "
                          f"img_slice={[start, end]}, which is neither image first [0, {n_img}] nor text first "
                          f"[{n_txt}, {n_txt + n_img}] for {n_img} image and {n_txt} text tokens")

    def __call__(self, state: dict, transformer_options: Optional[dict] = None) -> dict:
        first = self.order(state, transformer_options)
        return {"img": torch.cat((state[first], state["txt" if first == "img" else "img"]), dim=1)}


TXT_FIRST = cat_streams("txt", "img")
IMG_FIRST = cat_streams("img", "txt")
DOUBLE = ("img", "txt")
