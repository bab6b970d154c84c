"""A loaded model made ready for inference, the one way eval.py, the service and the benchmarks do
it: on its device, at the precision `decide` chose (Linear weights cast once, the attention path
set), or with int8 encoder weights."""
from __future__ import annotations

import torch
import torch.nn as nn

from .onednn import prepack_linears
from .precision import apply_precision, cast_linears_for_inference, decide
from .quantize import quantize_for_inference


def ready_for_inference(model: nn.Module, device, amp: str = "auto", quantize: str = "off",
                        tokenizer=None, prepack: bool = True) -> tuple[nn.Module, torch.dtype | None, str]:
    """(the model on `device` at its inference precision, the autocast dtype to run it under, why):
    int8 weights with fp32 activations when asked (the int8 kernels take fp32 input, so autocast
    stays off; the tokenizer feeds the calibration), else --amp's decision for this device; fp32
    on a CPU with oneDNN's prepacked products where they are faster (runtime/onednn.py; `prepack`
    False keeps PyTorch's Linear layers, for a model torch.compile will trace)."""
    device = torch.device(device)
    model = model.to(device)
    if quantize != "off":
        if tokenizer is None:
            raise ValueError("--quantize int8 needs the tokenizer (its calibration sentences)")
        model, reason = quantize_for_inference(model, tokenizer, quantize, device)
        return model, None, reason
    precision = decide(amp, device)
    model = apply_precision(cast_linears_for_inference(model, precision.dtype), precision)
    if precision.dtype is None and device.type == "cpu" and prepack:
        model, products = prepack_linears(model)
        return model, None, f"{precision.why}; {products}"
    return model, precision.dtype, precision.why
