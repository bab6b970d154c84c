"""The model-FLOP count (training.throughput.model_flops, shared by the training log and the
benchmark) against a count done by hand; `python -m benchmarks.throughput` end to end on a tiny
size under a fake clock, so its tokens/s, samples/s and TFLOP/s must equal hand-worked values;
the training log's rates from known counters; the provenance every result file carries; and the
peak-memory probe against a known allocation."""
from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import torch

from benchmarks import throughput
from benchmarks.memory import PeakMemory
from benchmarks.provenance import cpu_description
from benchmarks.throughput_cells import Batch
from training.state import TrainState
from training.throughput import attention_pairs, model_flops, multiplying_parameters
from training.throughput import throughput as train_throughput

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model_type": "xlm-roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 48, "max_position_embeddings": 66, "type_vocab_size": 1,
        "layer_norm_eps": 1e-5, "pad_token_id": 1}
# By hand, TINY with 7 labels (H 32, F 48, L 2), embeddings excluded:
#   per layer: QKV 3*32*32 + 3*32 = 3168, output 32*32 + 32 = 1056, FFN in 32*48 + 48 = 1584,
#   FFN out 48*32 + 32 = 1568, two LayerNorms 2*2*32 = 128: 7504; two layers 15008;
#   the classifier 32*7 + 7 = 231.
N_TINY = 15239


@pytest.fixture
def tiny_size(monkeypatch):
    monkeypatch.setitem(throughput.SIZES, "tiny", TINY)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[dict, list[str], Path]:
    """One tiny benchmark run (report, argv, output folder) under a fake clock: every read of
    the benchmark's clock is 0.25 s after the last, so each timed step takes 0.25 s."""
    now, out = [0.0], tmp_path_factory.mktemp("tp")

    def clock():
        now[0] += 0.25
        return now[0]
    argv = ["--device", "cpu", "--sizes", "tiny", "--precisions", "fp32", "--batch-sizes", "2", "3",
            "--seq-lens", "8", "--steps", "2", "--warmup", "1", "--rounds", "2", "--output-dir", str(out)]
    with pytest.MonkeyPatch.context() as m:
        m.setitem(throughput.SIZES, "tiny", TINY)
        m.setattr(throughput, "clock", clock)
        assert throughput.main(argv) == 0
    return json.loads((out / "throughput.json").read_text()), argv, out


def test_model_flops_against_a_hand_count(tiny_size):
    ours, _ = throughput.build_models("tiny", torch.device("cpu"))
    assert multiplying_parameters(ours) == N_TINY
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0  # 10 + 6 = 16 real tokens in a batch padded to 10: 16 * 10 = 160 (query, key) pairs
    assert attention_pairs(mask) == 160
    # forward: 2 * 15239 * 16 = 487,648 for the parameters, 4 * 2 layers * 32 * 160 = 40,960 for QK^T and AV
    assert model_flops(ours, 16, 160, training=False) == 528_608
    assert model_flops(ours, 16, 160, training=True) == 1_585_824  # 3 x the forward
    b = Batch(torch.full((2, 10), 5), mask, torch.zeros(2, 10, dtype=torch.long))
    assert throughput.flops_per_step(ours, b, "infer") == 528_608
    assert throughput.flops_per_step(ours, b, "train") == 1_585_824


def test_training_log_rates_from_known_counters(tiny_size):
    ours, _ = throughput.build_models("tiny", torch.device("cpu"))
    state = TrainState(train_seconds=2.0, samples=2, tokens=16, padded_tokens=20, attention_pairs=160)
    r = train_throughput(state, ours, torch.device("cpu"), peak_tflops=1e-6)
    assert (r["samples_per_second"], r["tokens_per_second"], r["padded_tokens_per_second"]) == (1.0, 8.0, 10.0)
    assert r["padding_share"] == pytest.approx(0.2)  # 4 of 20 positions
    assert r["model_tflops_per_second"] == pytest.approx(1_585_824 / 2.0 / 1e12)  # the hand count above, over 2 s
    assert r["mfu"] == pytest.approx(1_585_824 / 2.0 / 1e6)  # against a peak of 1 MFLOP/s


def test_tiny_run_rates_follow_the_timed_steps(tiny_run):
    report = tiny_run[0]
    rows = report["rows"]
    # 2 modes x 2 cells x 3 implementations, and on a CPU ONNX Runtime (fp32, int8) and our int8 for inference
    assert {(r["mode"], r["cell"], r["impl"]) for r in rows} == {
        (m, c, i) for m in ("infer", "train") for c in ("2x8", "3x8") for i in ("ours", "hf-sdpa", "hf-eager")} | {
        ("infer", c, i) for c in ("2x8", "3x8") for i in ("ours-int8", "ort-fp32", "ort-int8")}
    for r in rows:
        batch = int(r["cell"].split("x")[0])
        assert r["seconds"] == 0.5  # 2 timed steps of 0.25 s
        assert r["tokens_per_s"] == batch * 8 * 2 / 0.5  # no padding: B x 8 tokens a step
        assert r["samples_per_s"] == batch * 2 / 0.5
    # 2x8, per step: 2 * 15239 * 16 tokens + 4 * 2 * 32 * (16 * 8 pairs) = 487,648 + 32,768 = 520,416
    # FLOPs forward; 2 steps in 0.5 s. Training: 3x.
    by = {(r["mode"], r["cell"], r["impl"]): r for r in rows}
    assert by[("infer", "2x8", "ours")]["tflops"] == pytest.approx(2 * 520_416 / 0.5 / 1e12)
    assert by[("train", "2x8", "hf-sdpa")]["tflops"] == pytest.approx(3 * 2 * 520_416 / 0.5 / 1e12)


def test_tiny_run_writes_its_provenance_and_tables(tiny_run):
    report, argv, out = tiny_run
    p = report["provenance"]
    assert datetime.fromisoformat(p["date"]).tzinfo is not None
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert p["commit"].split()[0] == head and p["commit"].removeprefix(head) in ("", " dirty")
    assert (p["cpu"], p["cpu_flags"]) == tuple(cpu_description()) and p["torch"] == torch.__version__
    assert p["command"] == "python -m benchmarks.throughput " + " ".join(argv)
    assert report["machine"]["peak_tflops"]["fp32"] > 0 and report["machine"]["peak_source"]
    md = (out / "throughput.md").read_text()
    assert md.startswith(f"Measured {p['date']} on {p['cpu']}") and f"Commit {p['commit']}." in md
    assert f"Command: `{p['command']}`" in md
    assert "## train, fp32" in md and "| tiny | 3x8 | 3 x 8 |" in md
    assert "comparisons" in md and "ours-int8/ort-int8" in md
    try:
        import matplotlib  # noqa: F401
        assert (out / "throughput.png").stat().st_size > 1000
    except ImportError:
        pass


def test_the_training_loop_counts_attention_pairs(panx_dir, spm_path, tmp_path):
    """A real (tiny) run: its logged FLOPs must hold attention's term, which needs the loop's
    per-batch (query, key) count; without it they would be exactly 6N per token."""
    from tests.tiny import panx_head
    from tests.tiny import tiny_checkpoint
    from training import TrainConfig, train

    model = tiny_checkpoint(tmp_path / "m", spm_path)
    data = panx_head(panx_dir, tmp_path, sizes=(("train", 32), ("dev", 8), ("test", 8)))
    cfg = TrainConfig(langs=["de"], eval_langs=["de"], model=str(model), data_dir=str(data), full_splits=True,
                      epochs=1, batch_size=8, output_dir=str(tmp_path / "run"), no_progress=True, save_steps=0)
    r = train(cfg)["throughput"]
    flops = r["model_tflops_per_second"] * 1e12 * r["train_seconds"]
    tokens = r["tokens_per_second"] * r["train_seconds"]
    # tiny_checkpoint (H 32, FFN 64, L 2, 7 labels), by hand: per layer 3168 + 1056 + (32*64 + 64)
    # + (64*32 + 32) + 128 = 8544; N = 2 * 8544 + 231 = 17319, 6N = 103,914 FLOPs a token.
    six_n = 103_914
    # Attention adds 12 * 2 * 32 = 768 per (query, key) pair; every real token meets at least the
    # 3 positions of "<s> word </s>" and at most 512.
    assert six_n * tokens + 768 * 3 * tokens <= flops * (1 + 1e-9)
    assert flops <= (six_n + 768 * 512) * tokens


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


def test_a_run_under_limited_instructions_says_so(monkeypatch):
    """An imitated AVX2-only CPU keeps its AVX-512 flags in /proc/cpuinfo: the result must name
    the variables that limited it, or its figures read as the full CPU's."""
    from benchmarks.provenance import provenance, summary

    for name in ("MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    p = provenance("benchmarks/trainer.py", [])
    assert p["isa_limits"] == {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2"}
    assert "limited by ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2" in summary(p)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert "limited by" not in summary(provenance("benchmarks/trainer.py", []))
