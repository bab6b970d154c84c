"""The CPU's fp32 matrix-product peak as the best library here reaches it, not PyTorch's alone.

    python -m benchmarks.gemm_peak                       # e5-small's FFN shape and 2048^2
    python -m benchmarks.gemm_peak --shapes 1024x768x3072

Each library multiplies the same (M x K) @ (K x N) fp32 matrices, as a Linear layer does (the
weight given once, ahead of time, as inference has it): PyTorch's `F.linear` (MKL, or what this
build uses), oneDNN with the weight prepacked (`torch.ops.mkldnn._linear_pointwise`), numpy
(OpenBLAS), ONNX Runtime's MatMul (its MLAS kernels) when installed. Best of `--repeats` timed
runs after a warm-up, GFLOP/s = 2MKN / seconds. `peak()` is what the throughput benchmark's MFU
column divides by: the best of them, named.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.onnx_runtime import available, session
from benchmarks.provenance import provenance, summary

SHAPES = ((1024, 384, 1536), (2048, 2048, 2048))


def _best(run, repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def torch_linear(x: torch.Tensor, w: torch.Tensor):
    return lambda: F.linear(x, w)


def onednn_prepacked(x: torch.Tensor, w: torch.Tensor):
    """None where this build has no oneDNN (mkldnn) linear."""
    if not torch.backends.mkldnn.is_available():
        return None
    packed = torch.ops.mkldnn._reorder_linear_weight(w, x.shape[0])
    return lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


def numpy_matmul(x: torch.Tensor, w: torch.Tensor):
    a, b = x.numpy(), np.ascontiguousarray(w.numpy().T)
    return lambda: a @ b


def ort_matmul(x: torch.Tensor, w: torch.Tensor):
    """ONNX Runtime's MatMul with the weight as an initializer (None without onnxruntime/onnx)."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    if not available():
        return None
    m, k = x.shape
    weight = numpy_helper.from_array(np.ascontiguousarray(w.numpy().T), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, w.shape[0]])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    matmul = session(model.SerializeToString())
    feed = {"x": x.numpy()}
    return lambda: matmul.run(None, feed)


LIBRARIES = {"torch F.linear": torch_linear, "oneDNN prepacked": onednn_prepacked, "numpy": numpy_matmul,
             "ONNX Runtime MatMul": ort_matmul}


def measure(m: int, k: int, n: int, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of each library available on one shape."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    out = {}
    for name, build in LIBRARIES.items():
        run = build(x, w)
        if run is not None:
            out[name] = 2 * m * k * n / _best(run, repeats) / 1e9
    return out


def peak(shape=SHAPES[0], repeats: int = 10) -> tuple[float, str]:
    """(the best GFLOP/s any library reaches on the shape, which library)."""
    rates = measure(*shape, repeats)
    name = max(rates, key=rates.get)
    return rates[name], name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=[f"{m}x{k}x{n}" for m, k, n in SHAPES], help="MxKxN")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    print(summary(provenance(__file__, sys.argv[1:] if argv is None else argv)))
    print(f"fp32 GFLOP/s, best of {args.repeats}")
    for shape in args.shapes:
        m, k, n = map(int, shape.split("x"))
        rates = measure(m, k, n, args.repeats)
        best = max(rates.values())
        print(f"({m} x {k}) @ ({k} x {n}): " + ", ".join(f"{name} {r:.0f} ({r / best:.0%})" for name, r in rates.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
