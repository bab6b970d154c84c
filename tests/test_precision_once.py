"""A run's precision is decided once: a resumed run and every DDP rank keep the first decision,
even when the probe that made it would now answer otherwise."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from runtime import precision
from runtime.precision import SHORT_ATTENTION, apply_precision
from tests.tiny import TAGS
from training import TrainConfig, loop, prepare
from xlmr.config import XLMRConfig
from xlmr.model import SelfAttention, XLMRForTokenClassification

import train_loop
from tests.tiny import run_args


class FlippingProbe:
    """`choose` as a busy machine might answer it: fp32 the first time, bf16 after."""

    def __init__(self):
        self.calls = 0

    def __call__(self, name, device):
        self.calls += 1
        return (None, "fp32: first probe") if self.calls == 1 else (torch.bfloat16, "bf16: a later probe")


@pytest.mark.slow
def test_a_resumed_run_keeps_the_first_precision(tiny, small_panx, tmp_path, monkeypatch):
    probe = FlippingProbe()
    monkeypatch.setattr(precision, "choose", probe)
    out = tmp_path / "run"
    first = train_loop.config_from(train_loop.build_parser().parse_args(
        run_args(tiny, small_panx, out, "--epochs", "1", "--keep-last", "--num-samples", "32")))
    loop.train(first)
    saved = json.loads((out / "last" / "state.json").read_text())["precision"]
    assert saved["amp"] == "fp32" and probe.calls == 1
    # Resumed for a second epoch: the probe would now say bf16, the run stays fp32.
    resumed = train_loop.config_from(train_loop.build_parser().parse_args(
        run_args(tiny, small_panx, out, "--epochs", "2", "--num-samples", "32") + ["--resume", str(out)]))
    results = loop.train(resumed)
    assert probe.calls == 1  # not asked again
    assert results["config"]["amp_dtype"] == "None" and results["config"]["precision"]["amp"] == "fp32"
    assert "decided when the run started" in results["config"]["amp_reason"]


def attention_paths(decision) -> set[int]:
    """The attention path a decision sets on a freshly built tiny model."""
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=50, hidden_size=8, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=16)
    model = apply_precision(XLMRForTokenClassification(config), decision)
    return {m.matmul_attention_up_to for m in model.modules() if isinstance(m, SelfAttention)}


def test_a_recorded_attention_path_is_reused(tmp_path, monkeypatch):
    recorded = {"amp": "bf16", "reason": "bf16: probed", "attention_by_matmul": True}
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "state.json").write_text(json.dumps({"precision": recorded}))
    monkeypatch.setattr(precision, "choose", lambda *a: pytest.fail("a resumed run must not probe"))
    monkeypatch.setattr(precision, "cpu_bf16_attention_by_matmul", lambda: pytest.fail("nor time attention"))
    decision = prepare.decide_precision(TrainConfig(resume=str(tmp_path)), torch.device("cpu"), 1)
    assert decision.dtype == torch.bfloat16 and decision.record() == recorded  # recorded again as it was
    assert "decided when the run started" in decision.why
    assert attention_paths(decision) == {SHORT_ATTENTION}


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    # Each rank's own probe would answer differently; rank 1's also picks the other attention path.
    precision.choose = lambda name, device: ((torch.bfloat16, f"bf16: rank {rank}'s probe") if rank == 0
                                             else (None, f"fp32: rank {rank}'s probe"))
    precision.cpu_bf16_attention_by_matmul = lambda: rank == 0
    decision = prepare.decide_precision(TrainConfig(), torch.device("cpu"), 2)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({**decision.record(), "attention_now": sorted(attention_paths(decision))}, f)
    dist.destroy_process_group()


@pytest.mark.slow
def test_every_ddp_rank_takes_rank_zeros_decision(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2)
    decisions = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert decisions[0] == decisions[1]
    assert decisions[1]["amp"] == "bf16" and decisions[1]["reason"] == "bf16: rank 0's probe"
    assert decisions[1]["attention_now"] == [SHORT_ATTENTION]  # rank 1 set rank 0's attention path, not its own
