"""The training loop on a tiny random model and a few hundred real PAN-X sentences."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_loop
from training import loop
from training.state import resumable_state, save_state
from loaders.panx import TAGS
from tests.tiny import run_args, tiny_checkpoint
from xlmr.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


def cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "train_loop.py"), *args], env=env, capture_output=True,
                          text=True, **kw)


def without_figures(precision: dict) -> dict:
    """A recorded precision decision with the numbers in its reason (a probe's GFLOP/s) masked."""
    return {**precision, "reason": re.sub(r"\d+", "#", precision["reason"])}


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tiny, small_panx, tmp_path):
    common = ("--epochs", "2", "--save-steps", "2", "--keep-last")
    kill_epoch = 0
    full = cli(run_args(tiny, small_panx, tmp_path / "a", *common))
    assert full.returncode == 0, full.stderr

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_loop.py"), *run_args(tiny, small_panx, tmp_path / "b", *common)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = tmp_path / "b" / "last" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["epoch"] == kill_epoch and state["batch"] >= 4:  # in the middle of an epoch
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state, "the run never reached the middle of an epoch"
    resumed = cli(run_args(tiny, small_panx, tmp_path / "b", *common, "--resume", str(tmp_path / "b")))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    ra, rb = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    # Runs a and b each probed when they started (--amp auto: bf16 where the CPU has it and it
    # pays): the same decision, though the figures a probe measures differ from run to run.
    assert without_figures(rb["config"]["precision"]) == without_figures(ra["config"]["precision"])
    for name in ["model.safetensors", "last/model.safetensors"]:
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    for key in ("val_loss", "val_f1"):
        assert [e[key] for e in ra["epochs"]] == [e[key] for e in rb["epochs"]]
    # The resumed run keeps what the killed run decided when it started, the probe's measured
    # GFLOP/s in its reason included: it does not probe again.
    assert rb["config"]["precision"] == state["precision"]
    assert "decided when the run started" in rb["config"]["amp_reason"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    a_steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == a_steps  # no step logged twice after the resume


@pytest.mark.slow
def test_ddp_matches_single_process(spm_path, small_panx, tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny", spm_path, dropout=0.0)  # no dropout: ranks draw other masks
    # fp32: two half batches sum to the whole batch's gradient up to fp32's rounding, which the
    # bound below holds. Under bf16 each half batch rounds its activations to 8 mantissa bits
    # apart from the whole batch's: measured on an AVX-512 BF16 machine, the weights then part by
    # up to 3.7e-3 after these 30 steps (350x the bound), too loose to catch a wrong average.
    fp32 = ("--epochs", "1", "--amp", "off")
    single = cli(run_args(model, small_panx, tmp_path / "one", *fp32))
    assert single.returncode == 0, single.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                          str(ROOT / "train_loop.py"), *run_args(model, small_panx, tmp_path / "two", *fp32)],
                         env=env, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = (json.loads((tmp_path / x / "results.json").read_text()) for x in ("one", "two"))
    assert two["config"]["world_size"] == 2
    # Two processes that each take half of every batch train the same weights as one process
    # (up to float summation order), so every tensor of the checkpoint matches.
    w1, w2 = (load_file(tmp_path / x / "model.safetensors") for x in ("one", "two"))
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(not torch.equal(w, load_file(model / "model.safetensors")[k]) for k, w in w1.items())  # it trained
    assert abs(one["epochs"][0]["val_loss"] - two["epochs"][0]["val_loss"]) < 1e-4
    # Samples and tokens are both counted over every process: per sample, the same tokens as one
    # process (a rank counting only its own share would see half of them).
    per_sample = [r["throughput"]["tokens_per_second"] / r["throughput"]["samples_per_second"] for r in (one, two)]
    assert per_sample[1] == pytest.approx(per_sample[0], rel=1e-12)
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == ["config.json", "metrics.jsonl", "model.safetensors", "results.json", "sentencepiece.bpe.model"]
    assert ddp.stdout.count("wrote ") == 1  # only rank 0 reports and writes


def test_bf16_autocast_on_cpu(tiny):
    model = load_model(tiny).eval()
    ids = torch.tensor([[0, 1310, 36157, 7, 2], [0, 15, 117182, 2, 1]])
    with torch.no_grad():
        fp32, _ = model(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16, _ = model(ids)
    assert bf16.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: measured, the logits differ by ~8e-4 at most (|logits| < 0.3).
    # A bound a few times that catches a wrong path (a lost mask, a wrong cast) that 0.05 would not.
    torch.testing.assert_close(bf16.float(), fp32, atol=3e-3, rtol=0)
    assert (bf16.float() - fp32).abs().max() > 0  # it did run in bf16


@pytest.mark.slow
def test_training_runs_under_bf16(tiny, small_panx, tmp_path):
    r = cli(run_args(tiny, small_panx, tmp_path / "bf16", "--epochs", "1", "--amp", "bf16", "--num-samples", "64"))
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert results["config"]["amp_dtype"] == "torch.bfloat16" and results["config"]["train_sentences"] == 64
    assert 0 <= results["test_f1"]["de"] <= 1


@pytest.mark.parametrize("case", ["missing model", "label count", "unknown language", "unwritable output"])
def test_bad_input_fails_before_training(case, tiny, spm_path, small_panx, tmp_path, capsys):
    model, out, langs = tiny, tmp_path / "out", ["--langs", "de"]
    if case == "missing model":
        model, expected = tmp_path / "no" / "such-model", "no model folder"
    elif case == "label count":
        model, expected = tiny_checkpoint(tmp_path / "five", spm_path, labels=5), "head has 5 labels but the data has 7"
    elif case == "unknown language":
        langs, expected = ["--langs", "xx"], "unknown PAN-X language 'xx'"
    else:
        (tmp_path / "a-file").write_text("")
        out, expected = tmp_path / "a-file" / "out", "cannot write to output folder"
    args = run_args(model, small_panx, out)
    args[0:2] = langs
    assert train_loop.main(args) == 1
    captured = capsys.readouterr()
    assert expected in captured.err and "training on" not in captured.out


def test_state_survives_a_kill_between_the_renames(tmp_path):
    """Simulate the two windows of save_state a SIGKILL can hit."""
    run = tmp_path / "run"
    (run / "last.old").mkdir(parents=True)
    (run / "last.old" / "state.json").write_text("{}")
    assert resumable_state(run) == run / "last.old"  # killed between the renames
    (run / "last").mkdir()
    (run / "last" / "state.json").write_text("{}")
    assert resumable_state(run) == run / "last"  # killed while removing last.old
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_state(run / "last", model, opt, sched, None, {"step": 7})
    assert json.loads((run / "last" / "state.json").read_text()) == {"step": 7}
    assert not (run / "last.old").exists() and not (run / "last.tmp").exists()


def test_the_transition_prior_is_counted_on_training_tags_and_weighted_on_validation(tiny, small_panx, tmp_path):
    from loaders.panx import read_panx
    from training import fit_prior
    from training.transitions import WEIGHTS

    args = train_loop.build_parser().parse_args(run_args(tiny, small_panx, tmp_path / "fit", "--epochs", "2"))
    results = loop.train(train_loop.config_from(args))
    config = json.loads((tmp_path / "fit" / "config.json").read_text())
    # German words put labels on '▁' pieces only, so decoding makes up for glued pieces.
    assert config["glued_pieces_labelled"] is False
    prior = config["tag_transitions"]
    # The counts, by hand, over the training file's tags (add-0.5 smoothing).
    tags = read_panx(small_panx / "train-de.tsv", "de")["ner_tags"]
    n = len(TAGS)
    starts = [0.5 + sum(t[0] == i for t in tags if t) for i in range(n)]
    pairs = [[0.5 + sum((a, b) == (i, j) for t in tags for a, b in zip(t, t[1:])) for j in range(n)] for i in range(n)]
    assert prior["start"] == pytest.approx([math.log(c / sum(starts)) for c in starts])
    assert [x for row in prior["follow"] for x in row] == pytest.approx(
        [math.log(c / sum(row)) for row in pairs for c in row])
    # Weight 0 is the plain constrained Viterbi that chose the best epoch: the same validation F1.
    f1 = {float(w): v for w, v in prior["validation_f1"].items()}
    assert sorted(f1) == sorted(WEIGHTS) and "open_by_type" not in prior
    assert f1[0.0] == pytest.approx(max(e["val_f1"] for e in results["epochs"]))
    assert prior["weight"] == max(WEIGHTS, key=lambda w: (f1[w], -w))  # the best F1; the smaller weight on a tie
    assert results["transition_prior"]["weight"] == prior["weight"]
    # A run without the prior, fitted after the fact, gets the same prior (the same seed, the same weights).
    args = train_loop.build_parser().parse_args(run_args(tiny, small_panx, tmp_path / "off", "--epochs", "2",
                                                         "--set", "transition_prior=off"))
    loop.train(train_loop.config_from(args))
    assert json.loads((tmp_path / "off" / "config.json").read_text())["tag_transitions"] is None
    assert fit_prior.main([str(tmp_path / "off")]) == 0
    later = json.loads((tmp_path / "off" / "config.json").read_text())["tag_transitions"]
    assert later["weight"] == prior["weight"] and later["start"] == pytest.approx(prior["start"])
    assert load_model(tmp_path / "off").config.tag_transitions["weight"] == prior["weight"]
