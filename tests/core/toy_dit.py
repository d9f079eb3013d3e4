"""A small pure-torch DiT-like stack for exercising the engine without any host.

Its blocks modify their input in place, like ComfyUI's, so a cache that forgets to clone
gets caught. Two-stage mode mimics Flux: double blocks carry {"img", "txt"}, then single
blocks see cat(txt, img).
"""
import torch
from torch import nn


class ToyBlock(nn.Module):
    def __init__(self, width, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(width, width, generator=g) * 0.2)
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        x += torch.tanh(x @ self.w + t)  # in place, like ComfyUI's blocks
        return x


class ToyDiT(nn.Module):
    def __init__(self, num_double=0, num_single=4, width=8, txt_tokens=2):
        super().__init__()
        self.double_img = nn.ModuleList(ToyBlock(width, 100 + i) for i in range(num_double))
        self.double_txt = nn.ModuleList(ToyBlock(width, 200 + i) for i in range(num_double))
        self.single_blocks = nn.ModuleList(ToyBlock(width, 300 + i) for i in range(num_single))
        self.txt_tokens = txt_tokens
        self.num_double = num_double

    @property
    def num_blocks(self):
        return len(self.double_img) + len(self.single_blocks)

    def block_calls(self):
        return sum(b.calls for b in self.double_img) + sum(b.calls for b in self.single_blocks)

    def forward(self, x, t, txt=None, hook=None, residuals=None):
        """hook(j, state, compute, to_stage) -> state, or None to run every block. `residuals[j]`, when
        given, is added in place after single block j, as ComfyUI adds ControlNet residuals."""
        if hook is None:
            hook = lambda j, state, compute, to_stage: compute(state)
        img = x.clone()
        if txt is None:
            txt = torch.zeros(x.shape[0], self.txt_tokens, x.shape[2])
        txt = txt.clone()
        for j, (bi, bt) in enumerate(zip(self.double_img, self.double_txt)):
            def compute(s, bi=bi, bt=bt):
                return {"img": bi(s["img"], t), "txt": bt(s["txt"], t)}
            out = hook(j, {"img": img, "txt": txt}, compute, None)
            img, txt = out["img"], out["txt"]
        h = torch.cat((txt, img), 1) if self.num_double else img
        to_stage = (lambda s: torch.cat((s["txt"], s["img"]), 1)) if self.num_double else None
        for k, block in enumerate(self.single_blocks):
            h = hook(self.num_double + k, h, lambda s, b=block: b(s, t), to_stage)
            if residuals is not None:
                h += residuals[k]
        return h[:, txt.shape[1]:] if self.num_double else h
