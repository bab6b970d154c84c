"""Which attention a model runs over a padded batch: padded (the batch padded again around
scaled_dot_product_attention, with a key mask) or variable-length (each sentence over its own
tokens, on jagged tensors: xlmr/packing.py), decided per device in one place.

`auto` (what `decide` in runtime/precision.py takes, so training, eval.py, the service and the
benchmarks all get it):
- CUDA: variable-length, where FlashAttention or the memory-efficient kernel is enabled: both have
  a variable-length form that PyTorch's jagged tensors reach (ModernBERT reports 10-20% from full
  unpadding with varlen FlashAttention over other unpadding). Padding is then dropped in training
  too, not only in inference. Not yet measured on a GPU here: benchmarks/gpu_check.py does;
- CPUs: padded. PyTorch 2.13 has no variable-length CPU kernel: attention on jagged tensors takes
  its math path there, which cuts the batch into one tensor per sentence on the host. Measured
  (docs/speed.md): a whole forward pass several times slower than the padded one;
- elsewhere: padded.
`varlen` and `padded` force either; both give the same values (tests/test_varlen.py).
"""
from __future__ import annotations

import torch

ATTENTION_CHOICES = ("auto", "varlen", "padded")


def choose(name: str, device: torch.device | str) -> tuple[bool, str]:
    """(variable-length attention?, why) for a choice on a device."""
    if name == "varlen":
        return True, "varlen attention: asked for"
    if name == "padded":
        return False, "padded attention: asked for"
    if name != "auto":
        raise ValueError(f"unknown attention {name!r}; choose from {', '.join(ATTENTION_CHOICES)}")
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"padded attention: jagged attention takes PyTorch's slow math path on {device.type}"
    if not (torch.backends.cuda.flash_sdp_enabled() or torch.backends.cuda.mem_efficient_sdp_enabled()):
        return False, "padded attention: FlashAttention and the memory-efficient kernel are both disabled"
    return True, "varlen attention: padding dropped, the variable-length FlashAttention/memory-efficient kernels"


def apply_attention(model, varlen: bool) -> None:
    """Sets the choice on a model (XLMRForTokenClassification), in place."""
    model.encoder.varlen = varlen


def uses_varlen(model) -> bool:
    return model.encoder.varlen
