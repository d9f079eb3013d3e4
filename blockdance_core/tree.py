"""Block states as small trees of tensors.

A block's hidden state is one tensor (Wan, PixArt), a dict of streams ({"img", "txt"} for
two-stream blocks, where a stream may be None as in SD3's last block) or a tuple (LTX-2's
(video, audio)). These helpers let the cache treat all of them alike.
"""
from __future__ import annotations

from typing import Any, Callable, List

import torch


def tree_map(fn: Callable, *trees: Any) -> Any:
    """Apply fn leaf-wise to tensors; None leaves stay None."""
    first = trees[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return fn(*trees)
    if isinstance(first, dict):
        return {k: tree_map(fn, *(t[k] for t in trees)) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(tree_map(fn, *items) for items in zip(*trees))
    raise TypeError(f"unsupported block state leaf of type {type(first).__name__}")


def tree_leaves(tree: Any) -> List[torch.Tensor]:
    if tree is None:
        return []
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [leaf for k in tree for leaf in tree_leaves(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in tree_leaves(item)]
    raise TypeError(f"unsupported block state leaf of type {type(tree).__name__}")


def tree_clone(tree: Any) -> Any:
    """Detached copies: ComfyUI blocks and ControlNet adds modify tensors in place."""
    return tree_map(lambda t: t.detach().clone(), tree)


def tree_signature(tree: Any) -> tuple:
    """What must stay equal for a cached state to be reusable."""
    if tree is None:
        return (None,)
    if isinstance(tree, torch.Tensor):
        return (tuple(tree.shape), tree.dtype, tree.device)
    if isinstance(tree, dict):
        return tuple((k, tree_signature(tree[k])) for k in tree)
    return tuple(tree_signature(item) for item in tree)


def tree_nbytes(tree: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(tree))


def tree_chunk(tree: Any, chunks: int, dim: int) -> List[Any]:
    """Split every leaf into `chunks` equal parts along the batch dim (one per conditioning)."""
    if chunks == 1:
        return [tree]
    return [tree_map(lambda t, i=i: t.chunk(chunks, dim=dim)[i], tree) for i in range(chunks)]


def tree_add(state: Any, offset: Any) -> Any:
    """state + offset leaf-wise; a stream the offset lacks (None: SD3's last block has no text
    output) is None in the result too, as the block itself would return it."""
    if offset is None:
        return None
    if isinstance(offset, torch.Tensor):
        return state + offset
    if isinstance(offset, dict):
        return {k: tree_add(state[k], offset[k]) for k in offset}
    if isinstance(offset, (tuple, list)):
        return type(offset)(tree_add(s, o) for s, o in zip(state, offset))
    raise TypeError(f"unsupported block state leaf of type {type(offset).__name__}")


def tree_sub(a: Any, b: Any) -> Any:
    """a - b leaf-wise, None where a has None."""
    return tree_map(lambda x, y: x - y, a, b)


def tree_cat(trees: List[Any], dim: int) -> Any:
    if len(trees) == 1:
        return tree_map(lambda t: t.clone(), trees[0])
    return tree_map(lambda *ts: torch.cat(ts, dim=dim), *trees)
