"""`python -m benchmarks.gpu_check`: the commands it runs (200 training steps of 24 German
sentences; the three sizes at sequence length 128 with every implementation asked for), the
8-minute budget kept on a fake clock, its table worked by hand; and (slow) the whole check
for real on a CPU in its CI form."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_check

pytest.importorskip("transformers")


@pytest.fixture
def staged(monkeypatch, tmp_path):
    """gpu_check.main with its steps replaced by stand-ins that take exactly their estimate on a
    fake clock and return one known throughput row; the peaks fixed."""
    now, calls = [0.0], []

    def advance(step):
        now[0] += gpu_check.ESTIMATE_S[step]

    def fake_training(args, out, peaks):
        calls.append(("train", gpu_check.train_argv(args, out)))
        advance("train")
        return {"command": "train", "error": "stand-in"}

    def fake_throughput(args, size, out, precision):
        argv = gpu_check.throughput_argv(args, size, out, precision)
        calls.append((size, argv))
        advance(size)
        row = {"mode": "train", "cell": "32x128", "impl": "ours-varlen", "tokens_per_s": 300.0, "tflops": 1.0,
               "peak_mb": 2048.0, "seq": 128.0}
        return {"command": " ".join(argv), "rows": [row, row | {"impl": "hf-sdpa", "tokens_per_s": 200.0}]}

    monkeypatch.setattr(gpu_check, "clock", lambda: now[0])
    monkeypatch.setattr(gpu_check, "run_training", fake_training)
    monkeypatch.setattr(gpu_check, "run_throughput", fake_throughput)
    monkeypatch.setattr(gpu_check, "machine", lambda device, precisions, quick: {"peak_tflops": {"fp32": 4.0}})
    return calls, tmp_path


def test_the_check_runs_what_fits_in_its_budget(staged):
    calls, out = staged
    assert gpu_check.main(["--device", "cpu", "--model", "m", "--data-dir", "d", "--budget-s", "200",
                           "--output-dir", str(out)]) == 0
    # train (90 s) and e5-small (60 s) fit in 200 s; then 50 s are left: base (80) and large (140) are not started.
    assert [c[0] for c in calls] == ["train", "e5-small"]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["skipped"] == {"xlm-roberta-base": "expected ~80 s, 50 s of the budget left",
                                 "xlm-roberta-large": "expected ~140 s, 50 s of the budget left"}
    assert report["wall_s"] == 150 and report["provenance"]["command"].startswith("python -m benchmarks.gpu_check")
    train = calls[0][1]
    # 200 steps of 24 sentences: 4,800 sentences in one epoch.
    assert train[train.index("--num-samples") + 1] == "4800" and train[train.index("--batch-size") + 1] == "24"
    assert train[train.index("--epochs") + 1] == "1" and train[train.index("--device") + 1] == "cpu"
    tp = calls[1][1]
    assert tp[tp.index("--seq-lens") + 1] == "128" and tp[tp.index("--sizes") + 1] == "e5-small"
    assert tp[tp.index("--impls") + 1:tp.index("--impls") + 5] == ["ours", "ours-compiled", "ours-varlen", "hf-sdpa"]
    assert "--ragged" in tp and tp[tp.index("--data-dir") + 1] == "d"
    md = (out / "gpu_check.md").read_text()
    # By hand: 300 / 200 = 1.50x hf-sdpa; 1.0 TFLOP/s of a measured 4.0 is 25.0%; no datasheet on a CPU.
    assert "| e5-small | train | 32x128 | ours-varlen | 300 | 1.50x | 25.0% | - | 2048 |" in md
    assert "Skipped xlm-roberta-large: expected ~140 s, 50 s of the budget left." in md


def test_without_model_or_data_there_is_no_training_step(staged):
    calls, out = staged
    gpu_check.main(["--device", "cpu", "--output-dir", str(out)])
    assert [c[0] for c in calls] == list(gpu_check.DEFAULT_SIZES)
    assert json.loads((out / "gpu_check.json").read_text())["skipped"] == {"train": "no --model or --data-dir"}


def test_the_table_quotes_the_datasheet_peak():
    report = {"wall_s": 10, "budget_s": 480, "peaks": {"precision": "bf16", "measured": 500.0, "datasheet": 989},
              "skipped": {}, "steps": {"xlm-roberta-large": {"rows": [
                  {"mode": "infer", "cell": "ragged-32x128", "impl": "ours", "tokens_per_s": 1e5, "tflops": 98.9,
                   "peak_mb": None, "seq": 128.0}]}}}
    # 98.9 TFLOP/s: 19.8% of the measured 500, 10.0% of the datasheet's 989; no hf-sdpa row, no ratio.
    assert "| xlm-roberta-large | infer | ragged-32x128 | ours | 100000 | - | 19.8% | 10.0% | - |" in gpu_check.markdown(report)


@pytest.mark.slow  # a training run and a benchmark, in-process: ~30 s on 2 busy cores
def test_the_quick_check_runs_on_a_cpu(spm_path, panx_dir, tmp_path):
    from tests.tiny import panx_head, tiny_checkpoint

    model = tiny_checkpoint(tmp_path / "m", spm_path)
    data = panx_head(panx_dir, tmp_path, sizes=(("train", 32), ("dev", 16), ("test", 16)))
    out = tmp_path / "check"
    argv = ["--device", "cpu", "--quick", "--model", str(model), "--data-dir", str(data), "--output-dir", str(out)]
    assert gpu_check.main(argv) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["skipped"] == {} and report["wall_s"] < gpu_check.BUDGET_S
    train = report["steps"]["train"]
    assert train["steps"] == 2 and 0.0 <= train["test_f1"]["de"] <= 1.0 and train["samples_per_s"] > 0
    rows = report["steps"]["tiny"]["rows"]
    assert {(r["mode"], r["cell"], r["impl"]) for r in rows} == {
        (m, c, i) for m in ("infer", "train") for c in ("2x16", "ragged-2x16") for i in ("ours", "ours-varlen", "hf-sdpa")}
    assert json.loads((out / "throughput-tiny" / "throughput.json").read_text())["provenance"]["command"].startswith(
        "python -m benchmarks.throughput --device cpu --sizes tiny")
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("Measured ") and "Command: `python -m benchmarks.gpu_check --device cpu --quick" in md
    assert (Path(out) / "train" / "results.json").is_file()


def test_model_ab_loads_another_checkout_as_its_own_package():
    """benchmarks/model_ab.py on this very checkout as the "other": a class of its own (not
    xlmr.model's), which with the same weights gives the same logits."""
    import torch

    from benchmarks.model_ab import other_model_class
    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification

    root = Path(__file__).resolve().parents[1]
    cls, config_cls = other_model_class(root, "xlmr_again")
    assert cls is not XLMRForTokenClassification and cls.__module__ == "xlmr_again.model"
    spec = {"model_type": "xlm-roberta", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "id2label": {0: "O", 1: "B-PER"}}
    ours = XLMRForTokenClassification(XLMRConfig.from_dict(spec)).eval()
    other = cls(config_cls.from_dict(spec)).eval()
    other.load_state_dict(ours.state_dict())
    ids = torch.tensor([[0, 7, 9, 2], [0, 8, 2, 1]])
    with torch.no_grad():
        assert torch.equal(ours(ids)[0], other(ids)[0])
    with pytest.raises(FileNotFoundError, match="no xlmr/model.py"):
        other_model_class(root / "docs")
