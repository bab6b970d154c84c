"""Which floating-point precision a forward (and backward) pass runs in, as one autocast context.

Training, evaluation and tagging all take the same `--amp` choice, so the choice is made here,
once, for every caller.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def amp_dtype_for(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an `--amp` choice on a device; None means plain fp32."""
    if name == "off":
        return None
    if name == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for the dtype, or a context that changes nothing when it is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
