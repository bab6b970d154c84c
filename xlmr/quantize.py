"""`--quantize int8`: the encoder's Linear layers with int8 weights, for CPU inference.

Dynamic quantization, as ONNX Runtime's `quantize_dynamic` does it: each weight matrix is stored
as int8 with one scale per matrix; each batch's activations are quantized on the fly (their
range measured per call), multiplied in int8 with int32 sums, and the result comes back in fp32.
LayerNorm, the softmax, the embeddings and the classifier stay fp32. PyTorch's x86 engine picks
the kernels (fbgemm on AVX2/AVX-512, oneDNN where it has VNNI/AMX).

The cost in F1 is measured on the PAN-X test sets (docs/speed.md); the tagger and the service
decode the same way on quantized scores.
"""
from __future__ import annotations

import torch
import torch.nn as nn

QUANTIZE_CHOICES = ("off", "int8")


def quantize_for_inference(model: nn.Module, quantize: str, device: torch.device) -> tuple[nn.Module, str]:
    """(the model, a line saying what was done). Only on a CPU; the classifier head is kept fp32."""
    if quantize == "off":
        return model, "weights fp32"
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"--quantize {quantize!r}; choose from {', '.join(QUANTIZE_CHOICES)}")
    if torch.device(device).type != "cpu":
        raise ValueError("--quantize int8 runs on CPUs only (PyTorch's dynamic int8 kernels are CPU kernels)")
    model.eval()
    model.encoder = torch.ao.quantization.quantize_dynamic(model.encoder, {nn.Linear}, dtype=torch.qint8)
    return model, f"encoder Linear weights int8 (dynamic quantization, {torch.backends.quantized.engine} engine)"


def ready_for_inference(model: nn.Module, device, amp: str = "auto",
                        quantize: str = "off") -> tuple[nn.Module, torch.dtype | None, str]:
    """(the model on `device` at its inference precision, the autocast dtype, why): int8 weights
    with fp32 activations when asked (int8 kernels take fp32 input, so autocast stays off), else
    --amp's choice for this device, with the Linear weights cast once."""
    from .precision import cast_linears_for_inference, choose

    device = torch.device(device)
    model = model.to(device)
    if quantize != "off":
        model, reason = quantize_for_inference(model, quantize, device)
        return model, None, reason
    amp_dtype, reason = choose(amp, device)
    return cast_linears_for_inference(model, amp_dtype), amp_dtype, reason
