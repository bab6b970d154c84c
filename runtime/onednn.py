"""fp32 inference on a CPU through oneDNN's matrix products, where this CPU runs them faster.

PyTorch's fp32 `F.linear` on a CPU calls MKL's sgemm. On an AMD EPYC with AVX-512 (one core,
e5-small's shapes, 64 to 1,800 tokens) it ran at ~96-101 GFLOP/s, while oneDNN with the weight
prepacked ran the same products at 83-207 (1.4-2.1x on most shapes) and ONNX Runtime's MLAS at
230: ONNX Runtime's fp32 was 1.37x ours on a trained checkpoint (docs/speed.md). On an AMD EPYC
with AVX2 only, oneDNN measured 10% faster to 10% slower than MKL. So a probe decides, once per
process, on the model's own feed-forward shape: the Linear layers are rewritten to oneDNN's
(`PrepackedLinear`, inference only) where it is more than 1.1x as fast as `F.linear`.
The outputs agree with F.linear's to fp32 rounding (a few 1e-6 on these layers).
"""
from __future__ import annotations

import functools
import time

import torch
import torch.nn as nn

from xlmr.model import QKVProjection

FASTER_BY = 1.1  # below this margin the probe's noise could pick the slower library


class PrepackedLinear(nn.Module):
    """y = x W^T + b with W and b held as oneDNN tensors; x and y are ordinary tensors of any
    leading shape. A QKV projection's replacement returns its three parts, as QKVProjection does."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.out_features, self.parts = linear.out_features, 3 if isinstance(linear, QKVProjection) else 1
        self.weight = linear.weight.detach().to_mkldnn()  # (out, in), prepacked
        self.bias = linear.bias.detach().to_mkldnn()

    def forward(self, x: torch.Tensor):
        rows = x.reshape(-1, x.shape[-1])  # (..., in) -> (M, in)
        y = torch._C._nn.mkldnn_linear(rows.contiguous().to_mkldnn(), self.weight, self.bias).to_dense()
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.parts == 1 else y.split(self.out_features // 3, dim=-1)


def _seconds(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


@functools.lru_cache(maxsize=None)
def onednn_speedup(in_features: int, out_features: int, tokens: int = 512, rounds: int = 7) -> float:
    """How many times as fast oneDNN's prepacked product is as `F.linear` on (tokens, in) x
    (in, out), fp32, the two taken in turn so that other work on the machine slows both alike."""
    if not torch.backends.mkldnn.is_available():
        return 0.0
    with torch.random.fork_rng(devices=[]):  # a probe must not move the global random state (dropout, resume)
        torch.manual_seed(0)
        dense, x = nn.Linear(in_features, out_features), torch.randn(tokens, in_features)
    packed = PrepackedLinear(dense)
    with torch.no_grad():
        dense(x), packed(x)  # warm-up: kernel selection
        plain = prepacked = float("inf")
        for _ in range(rounds):
            plain = min(plain, _seconds(lambda: dense(x)))
            prepacked = min(prepacked, _seconds(lambda: packed(x)))
    return plain / prepacked


def prepack_linears(model: nn.Module) -> tuple[nn.Module, str]:
    """(the model, why): an fp32 model for CPU inference with its Linear layers on oneDNN where
    the probe finds them faster; unchanged otherwise. Not for a model that is still trained."""
    fc = model.encoder.layers[0].mlp.fc
    speedup = onednn_speedup(fc.in_features, fc.out_features)
    if speedup <= FASTER_BY:
        return model, f"fp32 products: PyTorch's (oneDNN measured {speedup:.2f}x of them)"
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.weight.dtype == torch.float32:
                setattr(parent, name, PrepackedLinear(child))
    return model, f"fp32 products: oneDNN's, prepacked ({speedup:.2f}x PyTorch's here)"
