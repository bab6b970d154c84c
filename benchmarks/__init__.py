"""Throughput and load measurements against references, run from the repository root as
modules (`python -m benchmarks.throughput ...`), so that they import the project as its tests
do. Every result file records its provenance (benchmarks/provenance.py); the model-FLOP count
is the training log's (training.throughput.model_flops); ONNX Runtime is set up in one place
(benchmarks/onnx_runtime.py)."""
