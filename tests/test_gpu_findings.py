"""What a first run on an NVIDIA GPU would have got wrong, checked on a CPU: torch.cuda's calls
replaced by recorders, so that each test sees which GPU was waited for, taken or asked, and in
what order. Each test fails on the code before its fix (noted per test)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from runtime import devices, precision


@pytest.fixture
def cuda_calls(monkeypatch):
    """Every torch.cuda.synchronize / set_device call and dist.init_process_group, in order."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("synchronize", device)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", torch.device(device))))
    monkeypatch.setattr(dist, "init_process_group", lambda backend=None, **kw: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    return calls


def test_waiting_is_for_the_timed_device(cuda_calls):
    """Before: torch.cuda.synchronize() with no device, which waits for the current GPU only."""
    devices.wait_for("cuda:1")
    devices.wait_for(torch.device("cpu"))
    assert cuda_calls == [("synchronize", torch.device("cuda", 1))]


def test_the_benchmark_and_the_probe_wait_for_the_device_they_time(monkeypatch):
    from benchmarks import throughput
    from benchmarks.throughput_cells import grid_cell

    waited = []
    monkeypatch.setattr(throughput, "wait_for", waited.append)
    runner = SimpleNamespace(device=torch.device("cuda", 1), step=lambda batch: None)
    throughput.time_block(runner, grid_cell(2, 4, 50), warmup=1, steps=3)
    assert waited == [torch.device("cuda", 1)] * 6  # before and after each timed step
    waited.clear()
    monkeypatch.setattr(precision, "wait_for", waited.append)
    precision.matmul_gflops(torch.float32, n=8, repeats=2, device="meta")  # meta: runs anywhere, times nothing
    assert waited == [torch.device("meta")] * 4


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak resident memory is read on Linux only")
def test_peak_memory_counts_what_the_optimizer_allocates(monkeypatch):
    """A block's runner (which builds the optimizer) allocating 64 MiB of state when it is made:
    the peak must hold it. Before: the peak was reset after the runner existed, so RowAdamW's
    moments and the row-gradient buffer (~1.15 GB for e5-small) were left out."""
    from benchmarks import throughput
    from benchmarks.throughput_cells import grid_cell

    class StateFirst:
        def __init__(self, impl, model, mode, dtype, device):
            self.device, self.state = device, torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written

        def step(self, batch):
            pass

        def close(self):
            self.state = None

    monkeypatch.setattr(throughput, "Runner", StateFirst)
    monkeypatch.setattr(throughput, "weight_bytes", lambda model: 0)
    monkeypatch.setattr(throughput, "flops_per_step", lambda model, b, mode: 1.0)
    args = argparse.Namespace(steps=1, warmup=0, rounds=1, impls=["ours"])
    bar = SimpleNamespace(update=lambda n: None)
    [row] = throughput.measure_cell({"ours": None}, grid_cell(1, 4, 50), "train", "fp32", args, torch.device("cpu"), bar)
    assert 60 <= row["peak_mb"] <= 120


def test_each_training_rank_takes_its_gpu_before_the_group_starts(cuda_calls, monkeypatch):
    """Before: init_process_group ran first, then set_device."""
    from training.prepare import setup_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert setup_distributed("cuda") == (1, 2, torch.device("cuda", 1))
    assert cuda_calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]


def test_eval_tag_under_torchrun_puts_each_rank_on_its_gpu(cuda_calls, monkeypatch):
    """Before: every rank loaded the model on `cuda`, which is cuda:0 for all of them."""
    import eval as cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    loaded = []

    class Stop(Exception):
        pass

    def load_for_cli(args):
        loaded.append(args.device)
        raise Stop

    monkeypatch.setattr(cli, "load_for_cli", load_for_cli)
    with pytest.raises(Stop):
        cli.cmd_tag_corpus(argparse.Namespace(device="cuda"))
    assert loaded == ["cuda:1"]
    assert cuda_calls == [("set_device", torch.device("cuda", 1)), ("init", "gloo")]


def test_a_process_device_outside_torchrun(cuda_calls, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert devices.process_device("cuda") == torch.device("cuda") and devices.process_device("cpu").type == "cpu"
    assert devices.process_device("cuda:1") == torch.device("cuda", 1)  # an explicit GPU is kept, and made current
    assert cuda_calls == [("set_device", torch.device("cuda", 1))]


def test_emulated_bf16_is_not_chosen(monkeypatch):
    """A V100 or T4: is_bf16_supported() says yes only when emulation counts. Before: bf16 chosen."""
    from benchmarks.throughput_models import supported_precisions

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert precision.choose("auto", torch.device("cuda"))[0] == torch.float16
    assert supported_precisions(torch.device("cuda")) == ["fp32", "fp16"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100, an H100
    assert precision.choose("auto", torch.device("cuda"))[0] == torch.bfloat16


def test_the_row_sparse_optimizer_is_for_one_cpu_process():
    """Before: RowAdamW and the row-sparse gradient on any single process, a GPU's too."""
    from tests.tiny import TAGS
    from training.embedding_grad import RowSparseGrad
    from training.prepare import keeps_embedding_rows
    from training.recipe import row_sparse_embedding
    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification

    assert keeps_embedding_rows(torch.device("cpu"), 1)[0]
    assert not keeps_embedding_rows(torch.device("cuda"), 1)[0] and not keeps_embedding_rows(torch.device("cpu"), 2)[0]
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=50, hidden_size=8, num_hidden_layers=0,
                        num_attention_heads=1, intermediate_size=8)
    assert isinstance(row_sparse_embedding(XLMRForTokenClassification(config), 1), RowSparseGrad)
    with torch.device("meta"):  # any device that is not the CPU reads the model's device, not the caller's word
        assert row_sparse_embedding(XLMRForTokenClassification(config), 1) is None


def test_batches_for_a_gpu_are_pinned(monkeypatch):
    from loaders.collate import PaddingCollator

    pinned = []

    def pin(self):
        pinned.append(tuple(self.shape))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    rows = [{"input_ids": [0, 5, 2], "labels": [-100, 1, -100]}, {"input_ids": [0, 2], "labels": [-100, -100]}]
    PaddingCollator()(rows)
    assert pinned == []
    batch = PaddingCollator(pin_memory=devices.pins_batches("cuda:0"))(rows)
    assert pinned == [(2, 3)] * 3 and set(batch) == {"input_ids", "attention_mask", "labels"}
    assert not devices.pins_batches("cpu")


def test_prediction_copies_scores_to_the_host_once_per_batch(monkeypatch):
    """Prediction moves results to the host with `.cpu()`; it must do so once per batch. Before:
    the log-probabilities, the losses and one `.cpu()` per sentence for its labels."""
    from datasets import Dataset

    from evaluation.predict import predict
    from tests.tiny import lookup_model

    model = lookup_model({7: 1, 8: 2}, vocab_size=20)
    copies, cpu = [], torch.Tensor.cpu

    def counted_cpu(self, *a, **k):
        copies.append(tuple(self.shape))
        return cpu(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", counted_cpu)
    data = Dataset.from_dict({
        "input_ids": [[0, 7, 8, 2], [0, 8, 2], [0, 7, 2], [0, 9, 9, 7, 2], [0, 2]],
        "labels": [[-100, 1, 2, -100], [-100, 0, -100], [-100, 1, -100], [-100, 0, 0, 1, -100], [-100, -100]]})
    out = predict(model, data, batch_size=2, decode="argmax")  # 3 batches, by length: (5, 4), (3, 3), (2,)
    assert copies == [(2, 5, 8), (2, 3, 8), (1, 2, 8)]  # (B, T, 7 log-probabilities + the loss)
    assert [o["words"] for o in out[:4]] == [[1, 2], [2], [1], [0, 0, 1]]  # the lookup model's tags, by its table
    assert out[3]["labels"].tolist() == [-100, 0, 0, 1, -100]


@pytest.mark.slow  # torch.compile on a CPU: four graphs, a minute or more on 2 cores
def test_each_compiled_cell_stays_within_the_recompile_limit(tmp_path):
    """Inference and training, each over a batch with padding (a key mask) and one without: four
    graphs in all, two per mode. Under a recompile limit of 2 (standing for Dynamo's 8 against a
    full grid of precisions, modes, masks and shapes), one compiled copy for every cell would
    pass it, which the benchmark makes an error; a fresh copy per precision and mode does not.
    Before: one copy for all cells, and past the limit PyTorch ran them eagerly, unsaid."""
    from benchmarks import throughput

    out = tmp_path / "tp"
    argv = ["--device", "cpu", "--sizes", "tiny", "--precisions", "fp32", "--modes", "infer", "train", "--ragged",
            "--batch-sizes", "2", "--seq-lens", "8", "--impls", "ours", "ours-compiled", "--warmup", "1", "--steps", "1",
            "--rounds", "1", "--quick-peak", "--output-dir", str(out)]
    with torch._dynamo.config.patch(recompile_limit=2):
        assert throughput.main(argv) == 0
    import json

    rows = json.loads((out / "throughput.json").read_text())["rows"]
    assert {(r["mode"], r["cell"]) for r in rows if r["impl"] == "ours-compiled"} == {
        (m, c) for m in ("infer", "train") for c in ("2x8", "ragged-2x8")}
