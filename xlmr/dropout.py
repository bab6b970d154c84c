"""Dropout whose random draws cost half as much on a CPU.

On a CPU, `F.dropout` draws one number from the Mersenne Twister for every element
(`bernoulli_`), and those draws were a ninth of an e5-small training step on an AMD EPYC
(docs/speed.md: 10 million elements a step, ~5.8 ns each). Here each draw serves two elements.
PyTorch's `random_()` on int32 gives 31 random bits (0 to 2^31 - 1), read as two 16-bit halves:
the low half has 16 random bits, the high half 15. An element is dropped when its half falls
among the lowest `d` of its 32768 values (2d of 65536 for the low half), d = round(p * 32768),
so both halves drop at the same rate d / 32768: p to within 1/65536 (0.1 becomes 0.100006).
Kept elements are scaled by 1 / (1 - d / 32768), so the expected value is unchanged. The draws
come from the global generator, so a run saved and resumed (training/state.py) draws the same
masks. Elsewhere (CUDA's fused dropout) `F.dropout` is kept.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = 1 << 15  # values of the high, 15-bit half of a draw; the low half has twice as many


def drop_threshold(p: float) -> int:
    """d: how many of the 32768 values of a 15-bit half (2d of the 65536 of a 16-bit one) drop an element."""
    return round(p * LEVELS)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` in distribution; on a CPU with two elements per random draw."""
    if not training or p == 0.0:
        return x
    d, n = drop_threshold(p), x.numel()
    if x.device.type != "cpu" or not 0 < d < LEVELS:  # a rate this grid cannot hold: F.dropout's own
        return F.dropout(x, p, training)
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
