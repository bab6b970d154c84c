"""Runs that go wrong: a full disk while a checkpoint, the training state or results.json is
written; a step whose loss or gradient is not finite; SIGINT and SIGTERM during training; and
the resume on another machine (a GPU run's state on a CPU, fewer GPUs than the saving one)."""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

import train_loop
from loaders.collate import PaddingCollator
from tests.tiny import run_args
from training import loop
from training.interrupt import StopSignals
from training.recipe import apply_gradients, epoch_batches
from training.state import load_state, resumable_state, save_state
from training.throughput import attention_pairs
from xlmr.atomic import WriteError, write_text_atomic
from xlmr.weights import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def config(model, data, out, *extra):
    return train_loop.config_from(train_loop.build_parser().parse_args(run_args(model, data, out, *extra)))


def left_behind(folder: Path) -> list[str]:
    """Temporary files or folders of an interrupted write."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


# ---------------------------------------------------------------------------------------------
# The disk fills part-way through a write


def half_then_full(data: bytes, path) -> None:
    """What a full disk does to a writer: part of the bytes land, then ENOSPC."""
    Path(path).write_bytes(data[: len(data) // 2])
    raise NO_SPACE


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "ckpt"
    first = load_model(tiny)
    save_model(first, folder)
    second = load_model(tiny)
    with torch.no_grad():
        second.classifier.weight.add_(1.0)
    import xlmr.weights

    monkeypatch.setattr(xlmr.weights, "save_file",
                        lambda tensors, path, metadata=None: half_then_full(safetensors_bytes(tensors, metadata), path))
    with pytest.raises(WriteError) as caught:
        save_model(second, folder)
    assert str(caught.value) == (f"could not write {folder / 'model.safetensors'}: No space left on device; "
                                 "the previous model.safetensors is unchanged")
    assert caught.value.errno == errno.ENOSPC
    for key, value in load_model(folder).state_dict().items():
        assert torch.equal(value, first.state_dict()[key]), key
    assert left_behind(folder) == []


def state_objects(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


@pytest.mark.parametrize("failing", ["model.safetensors", "optimizer.pt", "state.json"])
def test_a_full_disk_while_saving_the_training_state_keeps_the_previous_one(failing, tmp_path, monkeypatch):
    import training.state

    run = tmp_path / "run"
    model, opt, sched = state_objects(0)
    save_state(run / "last", model, opt, sched, None, {"step": 1})
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    later = state_objects(1)
    if failing == "model.safetensors":
        monkeypatch.setattr(training.state, "save_file", lambda t, path: half_then_full(safetensors_bytes(t), path))
    elif failing == "optimizer.pt":
        monkeypatch.setattr(torch, "save", lambda obj, path: half_then_full(b"x" * 1000, path))
    else:
        real = Path.write_text
        monkeypatch.setattr(Path, "write_text", lambda p, text, **kw: half_then_full(text.encode(), p)
                            if p.name == "state.tmp.json" else real(p, text, **kw))
    with pytest.raises(WriteError) as caught:
        save_state(run / "last", *later, None, {"step": 2})
    monkeypatch.undo()
    assert str(caught.value) == (f"could not write {run / 'last' / failing}: No space left on device; "
                                 "the previous last/ is unchanged")
    assert resumable_state(run) == run / "last" and left_behind(run) == []
    model2, opt2, sched2 = state_objects(2)
    assert load_state(run / "last", model2, opt2, sched2, None, torch.device("cpu")) == {"step": 1}
    for key, value in model2.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert sched2.last_epoch == 1 and opt2.state_dict()["state"][0]["step"] == 1


# The texts these libraries give on a full disk, measured on a 64 KiB tmpfs (torch 2.13,
# safetensors 0.7): torch.save's does not say why.
TORCH_SAVE_ON_A_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
SAFETENSORS_ON_A_FULL_DISK = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.mark.parametrize("free", [0, 2**30])
def test_a_library_error_on_a_full_disk_is_named_as_one(free, tmp_path, monkeypatch):
    from xlmr.atomic import write_atomic

    class Statvfs:
        f_bavail, f_frsize = free // 4096, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Statvfs())

    def fails(message):
        def write(path):
            Path(path).write_bytes(b"half")
            raise RuntimeError(message)
        return write

    with pytest.raises(WriteError) as torch_save:
        write_atomic(tmp_path / "optimizer.pt", fails(TORCH_SAVE_ON_A_FULL_DISK))
    with pytest.raises(WriteError) as rust:
        write_atomic(tmp_path / "model.safetensors", fails(SAFETENSORS_ON_A_FULL_DISK))
    target = tmp_path / "optimizer.pt"
    if free == 0:
        assert str(torch_save.value) == (f"could not write {target}: No space left on device (RuntimeError: "
                                         f"{TORCH_SAVE_ON_A_FULL_DISK}); nothing was written there")
    else:  # space left: the library's own words, unexplained
        assert str(torch_save.value) == f"could not write {target}: RuntimeError: {TORCH_SAVE_ON_A_FULL_DISK}; " \
                                        "nothing was written there"
    assert rust.value.reason == "No space left on device" and rust.value.errno == errno.ENOSPC
    assert left_behind(tmp_path) == []


@pytest.mark.slow
def test_a_full_disk_while_writing_results_json_keeps_the_previous_one(tiny, small_panx, tmp_path, monkeypatch,
                                                                       capsys):
    out = tmp_path / "run"
    out.mkdir()
    write_text_atomic(out / "results.json", '{"from": "an earlier run"}')
    real = Path.write_text
    monkeypatch.setattr(Path, "write_text", lambda p, text, **kw: half_then_full(text.encode(), p)
                        if p.name == "results.tmp.json" else real(p, text, **kw))
    args = run_args(tiny, small_panx, out, "--epochs", "1", "--num-samples", "32", "--set", "transition_prior=off")
    assert train_loop.main(args) == 1
    err = capsys.readouterr().err
    assert f"error: could not write {out / 'results.json'}: No space left on device; the previous results.json " \
           "is unchanged" in err
    assert json.loads((out / "results.json").read_text()) == {"from": "an earlier run"}
    assert left_behind(out) == []


def test_a_full_disk_while_eval_writes_its_results_is_one_clear_error(tiny, small_panx, tmp_path, monkeypatch,
                                                                       capsys):
    """eval.py test --output on a disk that fills: exit 1 with the file and the reason, no traceback,
    and the earlier results file unchanged."""
    import eval as ev

    target = tmp_path / "test.json"
    write_text_atomic(target, '{"from": "an earlier run"}')
    real = Path.write_text
    monkeypatch.setattr(Path, "write_text", lambda p, text, **kw: half_then_full(text.encode(), p)
                        if p.name == "test.tmp.json" else real(p, text, **kw))
    rc = ev.main(["test", "--model", str(tiny), "--data-dir", str(small_panx), "--langs", "de", "--amp", "off",
                  "--output", str(target)])
    assert rc == 1
    assert f"error: could not write {target}: No space left on device" in capsys.readouterr().err
    assert json.loads(target.read_text()) == {"from": "an earlier run"}


# ---------------------------------------------------------------------------------------------
# A step whose loss or gradient is not finite


def nested_equal(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(nested_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(nested_equal(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def optimizer_view(run) -> dict:
    """What AdamW holds, as torch.optim.AdamW would: the dense part and the embedding's moments
    as (V, H) tensors (RowAdamW's compact slots grow when a forward first reads a row, which
    changes no value)."""
    opt = run.optimizer
    return {"dense": opt.dense.state_dict(), "rows": opt.row_moments(), "step": opt.row_state["step"]}


def poisoned(run, how: str):
    """A hook that makes this step's loss nan (a corrupt forward) or one gradient inf."""
    if how == "nan loss":
        return run.model.classifier.register_forward_hook(lambda m, args, out: out * float("nan"))
    return run.model.classifier.bias.register_hook(lambda g: g * float("inf"))


@pytest.fixture(scope="module")
def run(tiny, small_panx, tmp_path_factory):
    """A set-up run (fp32, two micro-batches a step) whose steps the tests below call one by one."""
    run = loop.setup(config(tiny, small_panx, tmp_path_factory.mktemp("steps") / "run", "--amp", "off",
                            "--grad-accum", "2"))
    run.model.train()
    return run


def step(run, b: int):
    batches = epoch_batches(run.cfg, run.lengths, 0, run.shares)
    columns = (list(run.train_set["input_ids"]), list(run.train_set["labels"]))
    return loop.train_step(run, batches[b], columns, PaddingCollator())


def test_a_non_finite_step_is_skipped_with_no_update(run):
    assert step(run, 0).applied  # AdamW has moments to keep from here on
    for b, how in enumerate(["nan loss", "inf gradient"], start=1):
        run.optimizer.materialize()
        weights = {k: v.clone() for k, v in run.model.state_dict().items()}
        moments, schedule = optimizer_view(run), dict(run.scheduler.state_dict())
        hook = poisoned(run, how)
        skipped = step(run, b)
        hook.remove()
        assert not skipped.applied and not math.isfinite(skipped.grad_norm), how
        assert math.isnan(skipped.loss) if how == "nan loss" else math.isfinite(skipped.loss)
        run.optimizer.materialize()
        for key, value in run.model.state_dict().items():
            assert torch.equal(value, weights[key]), (how, key)
        assert nested_equal(optimizer_view(run), moments) and nested_equal(run.scheduler.state_dict(), schedule)
        assert all(p.grad is None for p in run.model.parameters())
        run.state.step = b + 1
        loop.count_skip(run, skipped, 0.1)
        logged = json.loads((run.out / "metrics.jsonl").read_text().splitlines()[-1])
        assert logged["type"] == "skipped" and logged["step"] == b + 1 and logged["in_a_row"] == logged["skipped"] == b
        assert logged["grad_norm"] in ("nan", "inf")
    after = step(run, 3)
    assert after.applied and run.scheduler.last_epoch == schedule["last_epoch"] + 1
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert any(not torch.equal(v, weights[k]) for k, v in run.model.state_dict().items())
    loop.count_skip(run, after, 0.2)
    assert (run.state.skipped_in_a_row, run.state.skipped_steps) == (0, 2)


def test_fp16_overflow_is_skipped_and_lowers_the_scale_as_grad_scaler_does():
    """GradScaler's own semantics (backoff factor 0.5 on an overflow, the step not taken); the
    step after it equals plain AdamW on the unscaled loss."""
    torch.manual_seed(0)
    model, twin = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    opt, twin_opt = (torch.optim.AdamW(m.parameters(), lr=0.1) for m in (model, twin))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    x = torch.randn(5, 4)
    hook = model.weight.register_hook(lambda g: g * float("inf"))  # what an fp16 overflow leaves
    loss = model(x).square().mean()
    scaler.scale(loss).backward()
    hook.remove()
    update = apply_gradients(model, opt, None, scaler, 1.0, loss)
    assert not update.applied and scaler.get_scale() == 2.0**15
    assert torch.equal(model.weight, twin.weight) and opt.state == {}
    loss = model(x).square().mean()
    scaler.scale(loss).backward()
    update = apply_gradients(model, opt, None, scaler, 1.0, loss)
    twin_loss = twin(x).square().mean()
    twin_loss.backward()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
    twin_opt.step()
    assert update.applied and update.loss == pytest.approx(twin_loss.item())
    torch.testing.assert_close(model.weight, twin.weight)
    torch.testing.assert_close(model.bias, twin.bias)


@pytest.mark.slow
def test_non_finite_steps_in_a_row_stop_the_run_and_keep_the_last_good_checkpoint(tiny, small_panx, tmp_path,
                                                                                  monkeypatch):
    """240 sentences in steps of 8: 30 a epoch. From step 33 on every training forward is nan."""
    out, calls, saved = tmp_path / "nan", {"n": 0}, {}
    real_setup, real_validate = loop.setup, loop.validate_and_checkpoint

    def poison_from_step_33(module, args, logits):
        if module.training:
            calls["n"] += 1
            return logits * float("nan") if calls["n"] > 32 else logits
        return logits

    def setup(cfg):
        run = real_setup(cfg)
        run.model.classifier.register_forward_hook(poison_from_step_33)
        return run

    def validate(run, epoch):  # what the last good epoch left on disk
        real_validate(run, epoch)
        saved.update({name: (out / name).read_bytes() for name in ("model.safetensors", "last/model.safetensors",
                                                                    "last/optimizer.pt", "last/state.json")})

    monkeypatch.setattr(loop, "setup", setup)
    monkeypatch.setattr(loop, "validate_and_checkpoint", validate)
    with pytest.raises(loop.RunError) as caught:
        loop.train(config(tiny, small_panx, out, "--epochs", "2", "--set", "max_skipped_in_a_row=5"))
    message = str(caught.value)
    assert message.startswith("steps 33-37 (epoch 2): 5 steps in a row had a non-finite loss or gradient")
    assert f"the checkpoint {out} (epoch 1" in message and f"the training state {out / 'last'}" in message
    for name, content in saved.items():
        assert (out / name).read_bytes() == content, name  # untouched by the skipped steps
    assert not (out / "results.json").exists()
    assert json.loads((out / "last" / "state.json").read_text())["step"] == 30
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["type"] == "skipped"] == [33, 34, 35, 36, 37]
    assert [r["in_a_row"] for r in logged if r["type"] == "skipped"] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------
# SIGINT and SIGTERM


def test_a_signal_asks_for_a_stop_and_a_second_ctrl_c_stops_at_once():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals(world=1, is_main=False) as stop:
        assert stop.requested() is None
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stop.requested() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert {s: signal.getsignal(s) for s in before} == before


def cli_env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def uninterrupted(tiny, small_panx, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    common = ("--epochs", "2", "--save-steps", "0", "--keep-last", "--set", "logging_steps=1")
    r = subprocess.run([sys.executable, str(ROOT / "train_loop.py"), *run_args(tiny, small_panx, out, *common)],
                       env=cli_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out, common


def interrupt(argv: list[str], out: Path, sig: int, log: Path) -> int:
    """Start a run, send `sig` once it has logged 4 steps, and return its exit status."""
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 300
        while time.time() < deadline:  # metrics.jsonl is written whole each time: never half a line
            lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").is_file() else []
            if sum('"type": "train"' in line for line in lines) >= 4:
                break
            assert proc.poll() is None, "the run ended before the signal"
            time.sleep(0.01)
        proc.send_signal(sig)
        return proc.wait(timeout=120)


def stopped_at(err: str, sig: int, out: Path) -> tuple[int, list[str]]:
    """The step the run says it stopped after, checked against its saved state, and the resume
    command it printed."""
    stopped = re.findall(rf"stopped by {sig.name} after step (\d+); the training state is saved in (.+)\n", err)
    assert len(stopped) == 1 and Path(stopped[0][1]) == out / "last", err[-3000:]  # one report, by rank 0
    step = int(stopped[0][0])
    state = json.loads((out / "last" / "state.json").read_text())
    # --save-steps 0: the only state within an epoch is the one the signal saved, at a step boundary.
    assert state["epoch"] == 0 and state["batch"] == state["step"] == step >= 4
    command = shlex.split(err.split("to continue it exactly:\n")[1].strip().splitlines()[0])
    assert command[command.index("--resume") + 1] == str(out)
    return step, command


def assert_same_run(full: Path, out: Path) -> None:
    for name in ["model.safetensors", "last/model.safetensors"]:
        a, b = load_file(full / name), load_file(out / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    ra, rb = (json.loads((x / "results.json").read_text()) for x in (full, out))
    assert [(e["val_loss"], e["val_f1"]) for e in ra["epochs"]] == [(e["val_loss"], e["val_f1"]) for e in rb["epochs"]]
    assert ra["test_f1"] == rb["test_f1"]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (full / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_state_and_the_printed_resume_gives_the_same_run(sig, uninterrupted, tiny, small_panx,
                                                                             tmp_path):
    full, common = uninterrupted
    out = tmp_path / "run"
    argv = [sys.executable, str(ROOT / "train_loop.py"), *run_args(tiny, small_panx, out, *common)]
    assert interrupt(argv, out, sig, tmp_path / "stderr") == 128 + sig
    step, command = stopped_at((tmp_path / "stderr").read_text(), sig, out)
    assert command[:2] == ["python", str(ROOT / "train_loop.py")]
    resumed = subprocess.run([sys.executable, *command[1:]], env=cli_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} at epoch 1, step {step}" in resumed.stdout
    assert_same_run(full, out)


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_processes_at_one_step_and_resumes_the_same_run(tiny, small_panx, tmp_path):
    """torchrun passes SIGTERM to each process, not between the same two steps; they agree on one
    boundary, rank 0 saves every process's generators (dropout 0.1: each rank draws its own
    masks), and the resumed run equals the uninterrupted one bit for bit."""
    common = ("--epochs", "1", "--amp", "off", "--save-steps", "0", "--keep-last", "--set", "logging_steps=1")

    def torchrun(port: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]

    full, out = tmp_path / "full", tmp_path / "run"
    r = subprocess.run(torchrun(29541) + [str(ROOT / "train_loop.py"), *run_args(tiny, small_panx, full, *common)],
                       env=cli_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    argv = torchrun(29542) + [str(ROOT / "train_loop.py"), *run_args(tiny, small_panx, out, *common)]
    assert interrupt(argv, out, signal.SIGTERM, tmp_path / "stderr") != 0  # torchrun reports the signal itself
    step, command = stopped_at((tmp_path / "stderr").read_text(), signal.SIGTERM, out)
    assert command[:4] == ["torchrun", "--nproc_per_node", "2", str(ROOT / "train_loop.py")]
    resumed = subprocess.run(torchrun(29543) + command[3:], env=cli_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out} at epoch 1, step {step}" in resumed.stdout
    assert_same_run(full, out)


# ---------------------------------------------------------------------------------------------
# Resuming on another machine


def test_a_gpu_runs_state_resumes_on_a_cpu_only_machine(tmp_path, monkeypatch):
    """The optimizer file of a CUDA run names cuda:0 for its tensors; loading it here without a
    map_location fails ("Attempting to deserialize object on a CUDA device")."""
    import torch.serialization

    model, opt, sched = state_objects(0)
    real_tag = torch.serialization.location_tag
    monkeypatch.setattr(torch.serialization, "location_tag",
                        lambda storage: "cuda:0" if real_tag(storage) == "cpu" else real_tag(storage))
    save_state(tmp_path / "last", model, opt, sched, None, {"step": 1})
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really names a GPU
        torch.load(tmp_path / "last" / "optimizer.pt", weights_only=False)
    model2, opt2, sched2 = state_objects(1)
    load_state(tmp_path / "last", model2, opt2, sched2, None, torch.device("cpu"))
    assert nested_equal(opt2.state_dict(), opt.state_dict())
    assert all(t.device.type == "cpu" for t in opt2.state_dict()["state"][0].values() if torch.is_tensor(t))


@pytest.mark.parametrize("rank", [0, 1])
def test_each_process_resumes_with_its_own_generators(rank, tmp_path):
    from training.state import rng_state

    states = []
    for seed in (10, 11):  # what two processes' generators hold when rank 0 saves
        torch.manual_seed(seed)
        states.append(rng_state())
    save_state(tmp_path / "last", *state_objects(0), None, {"step": 1}, rngs=states)
    torch.manual_seed(10 + rank)
    expected = torch.rand(3)
    load_state(tmp_path / "last", *state_objects(1), None, torch.device("cpu"), rank=rank)
    assert torch.equal(torch.rand(3), expected)


def test_fewer_gpus_than_the_saving_machine_restore_what_exists_and_warn(tmp_path, monkeypatch):
    saved = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)]  # two GPUs' generators
    model, opt, sched = state_objects(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    save_state(tmp_path / "last", model, opt, sched, None, {"step": 1})
    restored = []

    def set_rng_state(state, device=0):  # one GPU here: device 1 does not exist
        if device >= 1:
            raise RuntimeError("CUDA error: invalid device ordinal")
        restored.append((device, state.tolist()))

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)  # what set_rng_state_all calls
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_state(tmp_path / "last", *state_objects(1), None, torch.device("cpu"))
    assert restored == [(0, [1, 2])]
    assert any("random generators of 2 GPU(s), this machine has 1: restored 1" in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------
# What a step counts, and how long it took


@pytest.mark.parametrize("world, accum, multiple", [(1, 1, None), (2, 1, None), (2, 2, 32), (1, 3, 8)])
def test_a_step_counts_its_whole_global_batch_from_the_lengths(world, accum, multiple):
    """Against the collator's real tensors for every process's share: tokens and padding are the
    global batch's on every process, as samples are."""
    from types import SimpleNamespace

    from training.config import TrainConfig
    from training.state import TrainState

    lengths = [5, 17, 9, 3, 12, 30, 8, 8, 21, 4, 6, 11]
    run = SimpleNamespace(world=world, cfg=TrainConfig(grad_accum=accum), lengths=lengths, state=TrainState())
    batch = [3, 0, 7, 11, 5, 2, 9, 1, 10, 4, 6, 8]
    loop.count_work(run, batch, multiple)
    collate = PaddingCollator(pad_to_multiple_of=multiple)
    tokens = padded = pairs = 0
    for share in loop.shares(batch, world, accum):
        for micro in share:
            mask = collate([{"input_ids": [5] * lengths[i]} for i in micro])["attention_mask"]
            tokens, padded, pairs = tokens + int(mask.sum()), padded + mask.numel(), pairs + attention_pairs(mask)
    assert (run.state.tokens, run.state.padded_tokens, run.state.attention_pairs) == (tokens, padded, pairs)
    assert tokens == sum(lengths)
    assert sorted(i for share in loop.shares(batch, world, accum) for m in share for i in m) == sorted(batch)


def test_the_loop_reads_no_device_value_to_count(run):
    """Every read of a tensor's value on the host (item(), int(), bool(): aten._local_scalar_dense,
    a device sync on a GPU) during a step, by the project file that asked for it. The loop's
    counts come from the lengths; the reads left are the model's and the row optimizer's."""
    import traceback

    from torch.utils._python_dispatch import TorchDispatchMode

    readers = []

    class HostReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                # a virtual environment inside the checkout (as CI makes one) is not the project's code
                ours = [f.filename for f in traceback.extract_stack() if f.filename.startswith(str(ROOT))
                        and "/tests/" not in f.filename and "site-packages" not in f.filename]
                readers.append(Path(ours[-1]).relative_to(ROOT).as_posix() if ours else "torch")
            return func(*args, **(kwargs or {}))

    before = run.state.tokens
    with HostReads():
        update = step(run, 4)
    batch = epoch_batches(run.cfg, run.lengths, 0, run.shares)[4]
    assert update.applied and run.state.tokens - before == sum(run.lengths[i] for i in batch)
    assert "training/loop.py" not in readers and "training/throughput.py" not in readers, readers
    assert set(readers) <= {"xlmr/model.py", "xlmr/packing.py", "training/row_adamw.py", "training/embedding_grad.py",
                            "torch"}, readers


@pytest.mark.slow
def test_saving_time_is_not_training_time(tiny, small_panx, tmp_path, monkeypatch):
    """Each save takes 1000 s on a clock the loop reads: none of it may land in train_seconds."""
    offset, real_clock, real_save = [0.0], time.perf_counter, loop.save_state

    def slow_save(*args, **kwargs):
        real_save(*args, **kwargs)
        offset[0] += 1000.0

    monkeypatch.setattr(loop, "save_state", slow_save)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: real_clock() + offset[0])
    results = loop.train(config(tiny, small_panx, tmp_path / "run", "--epochs", "1", "--num-samples", "32",
                                "--save-steps", "1", "--set", "transition_prior=off"))
    assert offset[0] == 4000.0  # after steps 1, 2 and 3, and at the epoch's end
    assert results["throughput"]["train_seconds"] < 1000
