"""ONNX Runtime as the benchmarks run it, set up in this one place: what a user deploying on a
CPU would pick instead of PyTorch, so every comparison gets the same sessions.

Sessions: the CPU provider, all graph optimisations on, as many intra-op threads as torch has
(a comparison at unequal thread counts would measure the threads). int8 is ONNX Runtime's own
`quantize_dynamic` (QInt8 weights, its defaults) of our fp32 `--to-onnx` export.
"""
from __future__ import annotations

from pathlib import Path

import torch

ORT_IMPLS = ("ort-fp32", "ort-int8")


def session(model: Path | bytes):
    """An InferenceSession of an .onnx file or of a serialised graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def exported_sessions(ours, folder: Path, impls=ORT_IMPLS, tokenizer_file=None) -> dict:
    """{"ort-fp32": session, "ort-int8": session} (those in `impls`) of ours' weights, the files
    written to `folder`; each session carries `onnx_bytes`, its file's size (its weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from runtime.onnx_export import export_onnx

    files = {"ort-fp32": export_onnx(ours.eval(), folder, tokenizer_file=tokenizer_file)}
    if "ort-int8" in impls:
        files["ort-int8"] = Path(folder) / "model-int8.onnx"
        quantize_dynamic(files["ort-fp32"], files["ort-int8"], weight_type=QuantType.QInt8)
    sessions = {}
    for impl, file in files.items():
        if impl in impls:
            sessions[impl] = session(file)
            sessions[impl].onnx_bytes = file.stat().st_size
    return sessions


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
