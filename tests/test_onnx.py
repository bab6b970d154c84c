"""`python -m runtime.onnx_export RUN DIR` run in ONNX Runtime: logits within 1e-4 of ours at
three batch/length shapes (with padding), and the labels and tokenizer beside the model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import tiny_checkpoint
from xlmr.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_onnx_export_runs_in_onnx_runtime(spm_path, tmp_path):
    import onnxruntime as ort  # in the test extra, as are onnx and onnxscript for the exporter

    run = tiny_checkpoint(tmp_path / "run", spm_path, dropout=0.0)
    r = subprocess.run([sys.executable, "-m", "runtime.onnx_export", str(run), str(tmp_path / "onnx")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ours = load_model(run).eval()
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in ours.config.id2label.items()}
    assert (tmp_path / "onnx" / "tokenizer.json").is_file()

    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for batch, length in ((1, 5), (3, 37), (8, 130)):
        ids = torch.randint(3, 250_000, (batch, length), generator=g)
        mask = torch.ones_like(ids)
        for b in range(1, batch):  # ragged: later rows end early, padded with the pad id
            n = int(torch.randint(2, length + 1, (1,), generator=g))
            ids[b, n:], mask[b, n:] = ours.config.pad_token_id, 0
        with torch.no_grad():
            expected = ours(ids, mask)[0]
        got = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        assert got.shape == tuple(expected.shape)
        real = mask.bool().numpy()
        assert np.abs(got[real] - expected.numpy()[real]).max() < 1e-4, (batch, length)


@pytest.mark.slow
def test_the_checkpoint_benchmark_runs_end_to_end(tiny, small_panx, tmp_path):
    """benchmarks/ort_checkpoint.py on a tiny checkpoint: every implementation times and scores
    through the one evaluation, and ONNX Runtime's fp32 F1 is ours' (the same graph)."""
    import json

    from benchmarks import ort_checkpoint

    out = tmp_path / "bench"
    assert ort_checkpoint.main(["--model", str(tiny), "--data-dir", str(small_panx), "--sentences", "16",
                                "--batch-size", "8", "--rounds", "1", "--f1-langs", "de", "--output-dir", str(out)]) == 0
    report = json.loads((out / "ort_checkpoint.json").read_text())
    assert {"ours-fp32", "ours-int8", "ort-fp32", "ort-int8"} <= set(report["f1"])
    assert report["f1"]["ort-fp32"]["de"] == pytest.approx(report["f1"]["ours-fp32"]["de"], abs=1e-9)
    assert all(v > 0 for v in report["best"].values())
