"""Dropout whose random draws cost half as much on a CPU where PyTorch's own draw one at a time.

`F.dropout`'s Bernoulli kernel (aten/src/ATen/native/cpu/DistributionKernels.cpp) takes MKL's
vectorised generator, split over the threads, on Intel CPUs; on every other CPU it draws one
Mersenne Twister number per element on one thread. On an AMD EPYC those draws were a ninth of
an e5-small training step (docs/speed.md: 10 million elements a step, ~5.8 ns each). There,
each draw here serves two elements; on an Intel CPU `F.dropout` is kept.
PyTorch's `random_()` on int32 gives 31 random bits (0 to 2^31 - 1), read as two 16-bit halves:
the low half has 16 random bits, the high half 15. An element is dropped when its half falls
among the lowest `d` of its 32768 values (2d of 65536 for the low half), d = round(p * 32768),
so both halves drop at the same rate d / 32768: p to within 1/65536 (0.1 becomes 0.100006).
Kept elements are scaled by 1 / (1 - d / 32768), so the expected value is unchanged. The draws
come from the global generator, so a run saved and resumed (training/state.py) draws the same
masks. Elsewhere (CUDA's fused dropout) `F.dropout` is kept.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = 1 << 15  # values of the high, 15-bit half of a draw; the low half has twice as many


def drop_threshold(p: float) -> int:
    """d: how many of the 32768 values of a 15-bit half (2d of the 65536 of a 16-bit one) drop an element."""
    return round(p * LEVELS)


@functools.lru_cache(maxsize=None)
def bernoulli_is_parallel(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether PyTorch's CPU Bernoulli draws take MKL's parallel generator here: an Intel CPU
    (`cpuinfo`'s vendor) and a PyTorch built with MKL, as its kernel decides."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        info = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(line.split(":", 1)[-1].strip() == "GenuineIntel" for line in info.splitlines()
               if line.startswith("vendor_id"))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` in distribution; on a CPU whose Bernoulli draws are one at a
    time, with two elements per random draw (`half_draw_dropout`)."""
    if not training or p == 0.0:
        return x
    d = drop_threshold(p)
    # On CUDA, at a rate this grid cannot hold, and where PyTorch's draws are parallel: F.dropout's own.
    if x.device.type != "cpu" or not 0 < d < LEVELS or bernoulli_is_parallel():
        return F.dropout(x, p, training)
    return half_draw_dropout(x, d)


def half_draw_dropout(x: torch.Tensor, d: int) -> torch.Tensor:
    """x with each element dropped with probability d / 32768, the kept ones scaled to keep the mean."""
    n = x.numel()
    draws = torch.empty((n + 1) // 2, dtype=torch.int32).random_()  # 0 .. 2^31 - 1
    halves = draws.view(torch.int16).view(-1, 2)  # little-endian: (low 16 bits, high 15 bits) as int16
    # The low half reads -32768 .. 32767, the high one 0 .. 32767: keep above each one's lowest share.
    lowest_kept = torch.tensor([2 * d - LEVELS, d], dtype=torch.int16)
    keep = (halves >= lowest_kept).view(-1)[:n].view(x.shape)  # P(keep) = 1 - d / 32768 in both halves
    scale = torch.tensor(LEVELS / (LEVELS - d), dtype=x.dtype)
    return x * torch.where(keep, scale, torch.zeros((), dtype=x.dtype))  # backward: grad * the same mask


class Dropout(nn.Module):
    """`nn.Dropout` through `dropout` above."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
