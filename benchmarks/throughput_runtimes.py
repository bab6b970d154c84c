"""The CPU inference runtimes of benchmarks/throughput.py besides ours and transformers': ONNX
Runtime fp32 and int8 on our export of the same weights, and ours with `--quantize int8`."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from runtime.inference import ready_for_inference

from benchmarks.onnx_runtime import available, exported_sessions

FP32_INFERENCE_ONLY = ("ours-int8", "ort-fp32", "ort-int8")
BASE_IMPLS = ("ours", "hf-sdpa", "hf-eager")


def weight_bytes(model) -> int:
    """Bytes of the weights: an ONNX file's size; an int8 Linear's packed weight at a byte a value."""
    if hasattr(model, "onnx_bytes"):
        return model.onnx_bytes
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for m in model.modules():
        if callable(getattr(m, "weight", None)):  # a dynamically quantized Linear keeps weight() and bias()
            total += m.weight().numel() + (m.bias().numel() * 4 if m.bias() is not None else 0)
    return total


class RandomIds:
    """A stand-in tokenizer for the calibration of random weights: a random id per word."""

    def __init__(self, model):
        self.vocab, self.g = model.config.vocab_size, torch.Generator().manual_seed(0)

    def encode(self, text: str) -> list[int]:
        return [0] + torch.randint(3, self.vocab, (len(text.split()),), generator=self.g).tolist() + [2]


def fp32_inference_models(ours, size: str, args, device) -> dict:
    """The implementations that only run in the fp32 inference tables, for one size."""
    asked = [i for i in FP32_INFERENCE_ONLY if i in args.impls]
    if not asked or device.type != "cpu":
        return {}
    models = {}
    if "ours-int8" in asked:
        # Random weights: any ids calibrate them as well as text would (speed does not depend on values).
        models["ours-int8"] = ready_for_inference(copy.deepcopy(ours), device, "off", "int8", RandomIds(ours))[0]
    if any(i.startswith("ort") for i in asked):
        with tempfile.TemporaryDirectory() as folder:  # sessions keep what they need in memory
            models |= exported_sessions(ours, Path(folder), asked)
    return models


def default_impls(device: torch.device) -> list[str]:
    """transformers' two attentions; on a CPU also ONNX Runtime (when installed) and our int8."""
    impls = list(BASE_IMPLS)
    if device.type == "cpu":
        impls += ["ours-int8"] + (["ort-fp32", "ort-int8"] if available() else [])
    return impls
