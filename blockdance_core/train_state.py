"""Adam's per-parameter state as flat safetensors entries, so a training run can stop and resume
exactly (the moments and the step count of every parameter) without pickling the optimiser."""
from __future__ import annotations

from typing import Dict, Iterable

import torch


def adam_tensors(params: Iterable[torch.nn.Parameter], opt: torch.optim.Optimizer) -> Dict[str, torch.Tensor]:
    """`adam.<i>.exp_avg` / `exp_avg_sq` / `step` for every parameter Adam has stepped."""
    tensors = {}
    for i, p in enumerate(params):
        state = opt.state.get(p)
        if state:
            tensors[f"adam.{i}.exp_avg"] = state["exp_avg"].contiguous()
            tensors[f"adam.{i}.exp_avg_sq"] = state["exp_avg_sq"].contiguous()
            tensors[f"adam.{i}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    return tensors


def load_adam(saved, params: Iterable[torch.nn.Parameter], opt: torch.optim.Optimizer) -> None:
    """Put back what `adam_tensors` wrote; `saved` is an open safetensors file (safe_open)."""
    keys = set(saved.keys())
    for i, p in enumerate(params):
        if f"adam.{i}.exp_avg" in keys:
            opt.state[p] = {"exp_avg": saved.get_tensor(f"adam.{i}.exp_avg"),
                            "exp_avg_sq": saved.get_tensor(f"adam.{i}.exp_avg_sq"),
                            "step": saved.get_tensor(f"adam.{i}.step").reshape(())}
