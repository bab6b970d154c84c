"""benchmarks/throughput.py end to end on a tiny size, its FLOP count against a hand count, and
its peak-memory probe against a known allocation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import throughput  # noqa: E402
from benchmarks.memory import PeakMemory  # noqa: E402
from benchmarks.throughput_cells import Batch  # noqa: E402

pytest.importorskip("transformers")

TINY = {"model_type": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 48, "max_position_embeddings": 66, "type_vocab_size": 1,
        "layer_norm_eps": 1e-5, "pad_token_id": 1}


@pytest.fixture
def tiny_size(monkeypatch):
    monkeypatch.setitem(throughput.SIZES, "tiny", TINY)


def test_tiny_run_writes_every_cell(tmp_path, tiny_size):
    out = tmp_path / "tp"
    argv = ["--device", "cpu", "--sizes", "tiny", "--precisions", "fp32", "--batch-sizes", "2", "3",
            "--seq-lens", "8", "--steps", "2", "--warmup", "1", "--rounds", "2", "--output-dir", str(out)]
    assert throughput.main(argv) == 0
    report = json.loads((out / "throughput.json").read_text())
    rows = report["rows"]
    # 2 modes x 2 cells x 3 implementations, and on a CPU ONNX Runtime (fp32, int8) and our int8 for inference
    assert len(rows) == 18
    assert {(r["mode"], r["cell"], r["impl"]) for r in rows} == {
        (m, c, i) for m in ("infer", "train") for c in ("2x8", "3x8") for i in ("ours", "hf-sdpa", "hf-eager")} | {
        ("infer", c, i) for c in ("2x8", "3x8") for i in ("ours-int8", "ort-fp32", "ort-int8")}
    assert all(r["tokens_per_s"] > 0 and r["tflops"] > 0 for r in rows)
    assert report["machine"]["peak_tflops"]["fp32"] > 0
    md = (out / "throughput.md").read_text()
    assert "## train, fp32" in md and "| tiny | 3x8 | 3 x 8 |" in md
    assert "comparisons" in md and "ours-int8/ort-int8" in md
    assert report["machine"]["peak_source"]  # which library's product the fp32 MFU divides by
    try:
        import matplotlib  # noqa: F401
        assert (out / "throughput.png").stat().st_size > 1000
    except ImportError:
        pass


def test_flops_formula_against_a_hand_count(tiny_size):
    ours, _ = throughput.build_models("tiny", torch.device("cpu"))
    H, F, L, C = 32, 48, 2, 7
    per_layer = (3 * H * H + 3 * H) + (H * H + H) + (H * F + F) + (F * H + H) + 2 * (2 * H)  # QKV, out, FFN, 2 LN
    n = L * per_layer + (H * C + C)  # + the classifier; embeddings excluded
    ids = torch.full((2, 10), 5)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # 10 + 6 = 16 real tokens, padded length 10
    b = Batch(ids, mask, torch.zeros_like(ids))
    assert throughput.flops_per_step(ours, b, "infer") == 16 * (2 * n + 4 * L * H * 10)
    assert throughput.flops_per_step(ours, b, "train") == 16 * (6 * n + 12 * L * H * 10)


def test_models_share_weights_and_outputs(tiny_size):
    ours, hf = throughput.build_models("tiny", torch.device("cpu"))
    ours.eval(), hf.eval()
    ids = torch.randint(5, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(input_ids=ids).logits, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak resident memory is read on Linux only")
def test_peak_memory_sees_a_known_allocation():
    memory = PeakMemory(torch.device("cpu"))
    memory.start()
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so that every page is resident
    del x
    memory.stop()
    assert 60 <= memory.peak_mb(0) <= 120


def test_ratio_names_the_rounds_won():
    from benchmarks.throughput_report import ratio

    ours = {"tokens_per_s": 102.0, "blocks_tokens_per_s": [102.0, 90.0, 95.0]}
    other = {"tokens_per_s": 100.0, "blocks_tokens_per_s": [100.0, 91.0, 94.0]}
    assert ratio(ours, other) == "1.02x (2/3)"  # 102/100; ahead in rounds 1 and 3
    assert ratio(other, ours) == "0.98x (below 1) (1/3)"
    assert ratio({"tokens_per_s": 3.0}, {"tokens_per_s": 2.0}) == "1.50x"  # one round: no count


def test_no_grid_needs_pan_x(capsys):
    with pytest.raises(SystemExit):
        throughput.parse_args(["--no-grid"])
    assert "--no-grid leaves no cells without --data-dir" in capsys.readouterr().err
