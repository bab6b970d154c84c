"""The resumable state of a run, in one place: the counters of `TrainState`, and on disk in
last/ the weights, the optimizer, the schedule, the gradient scaler and every random generator.
`--resume` continues from it exactly: the resumed run's weights equal an uninterrupted run's."""
from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xlmr.atomic import whole_folder, write_atomic, write_folder_atomic, write_text_atomic
from xlmr.weights import check_tensors

from .config import RunError


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished
    step: int = 0  # global batches stepped through in all, skipped ones included
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient (no update)
    skipped_in_a_row: int = 0  # of those, the ones since the last applied step
    epochs: list[dict] = field(default_factory=list)  # one validation record per finished epoch
    best_f1: float = -1.0
    best_epoch: int | None = None
    train_seconds: float = 0.0  # time in training steps (validation and saving excluded)
    tokens: int = 0  # real tokens seen
    padded_tokens: int = 0  # positions computed, padding included
    attention_pairs: int = 0  # (query, key) pairs of the real tokens: attention's share of the model FLOPs
    samples: int = 0
    # The precision decided when the run started (runtime.precision.Precision.record()), kept for
    # --resume: {"amp": "bf16" | "fp16" | "fp32", "reason": ..., "attention_by_matmul": ...}.
    precision: dict | None = None

    @classmethod
    def from_saved(cls, saved: dict) -> "TrainState":
        """The counters of a state.json; keys an older version wrote and this one lacks (such as
        a removed weight average's, always None in a run that can be resumed now) are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


def rng_state() -> dict:
    """This process's random generators."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def save_state(folder: Path, model, optimizer, scheduler, scaler, state: dict, rngs: list[dict] | None = None) -> None:
    """The resumable state, written whole or not at all (xlmr/atomic.py's folder swap): a kill
    or a full disk at any moment leaves the previous state readable (see `resumable_state`).
    `rngs`: every process's generators, by rank (default: this process's alone). Under DDP each
    process draws its own dropout masks, so each needs its own back."""
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    rest = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rngs if rngs is not None else [rng_state()],
    }

    def write(tmp: Path) -> None:
        write_atomic(tmp / "model.safetensors", lambda p: save_file(weights, p))
        write_atomic(tmp / "optimizer.pt", lambda p: torch.save(rest, p))
        write_text_atomic(tmp / "state.json", json.dumps(state, indent=2))

    write_folder_atomic(folder, write)


def resumable_state(run: Path) -> Path | None:
    """The saved state of a run: last/, or last.old/ when a kill fell between the two renames of
    the folder swap (last/ is then absent and last.old/ still whole)."""
    return whole_folder(Path(run) / "last", "state.json")


def load_state(folder: Path, model, optimizer, scheduler, scaler, device: torch.device, rank: int = 0) -> dict:
    """Everything `save_state` wrote, back into the run's objects, with process `rank`'s random
    generators. Tensors are mapped onto the run's device: a state saved on a GPU resumes on a
    CPU-only machine, and under DDP each process loads onto its own GPU (saved by rank 0, the file
    names cuda:0)."""
    if not (folder / "state.json").is_file():
        raise RunError(f"nothing to resume in {folder}: no state.json (was the run saved?)")
    tensors = load_file(folder / "model.safetensors")
    check_tensors(model, tensors, folder)  # another --model than the run's: the keys named, not torch's traceback
    model.load_state_dict(tensors)
    # Our own file: the RNG states are not tensors only, so weights_only cannot read it.
    saved = torch.load(folder / "optimizer.pt", map_location=device, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])
    restore_rng(saved["rng"], rank, folder)
    return json.loads((folder / "state.json").read_text())


def restore_rng(saved: list[dict] | dict, rank: int, folder: Path) -> None:
    rngs = saved if isinstance(saved, list) else [saved]  # a state written before it kept every rank's
    if rank >= len(rngs):
        warnings.warn(f"{folder} holds the random generators of {len(rngs)} process(es); process {rank} takes "
                      "rank 0's: with more processes than the saving run, the resumed run is not bit-identical",
                      stacklevel=3)
    rng = rngs[rank] if rank < len(rngs) else rngs[0]
    torch.set_rng_state(rng["torch"].cpu())  # generators take their state as a CPU byte tensor
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    restore_cuda_rng(rng["cuda"], folder)


def restore_cuda_rng(states: list | None, folder: Path) -> None:
    """The saved generator of each GPU this machine also has. A machine with fewer GPUs than the
    saving one (torch.cuda.set_rng_state_all would fail on the first missing one) or more gets
    the ones both have, and a warning: dropout on the others draws other masks than it would
    have in the interrupted run."""
    if states is None:
        return
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, state in enumerate(states[:here]):
        torch.cuda.set_rng_state(state.cpu(), index)
    if here != len(states):
        warnings.warn(f"{folder} holds the random generators of {len(states)} GPU(s), this machine has {here}: "
                      f"restored {min(here, len(states))}; the resumed run is not bit-identical to an "
                      "uninterrupted one where it draws on the others", stacklevel=2)


class MetricsLog:
    """metrics.jsonl, one JSON object a line, kept in memory and written whole through
    xlmr/atomic.py at each record (a line per logging step and evaluation keeps it small), so a
    kill or a full disk never leaves half a line. On resume, lines past the resumed step are
    dropped so the file reads as one uninterrupted run."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None = None):
        self.path, self.enabled, self.lines = path, enabled, []
        if enabled and resume_step is not None and path.is_file():
            self.lines = [line for n, line in enumerate(path.read_text().splitlines(), 1)
                          if line and _record(path, n, line)["step"] <= resume_step]
        if enabled:
            self._write()

    def write(self, **record) -> None:
        if self.enabled:
            self.lines.append(json.dumps(record))
            self._write()

    def _write(self) -> None:
        write_text_atomic(self.path, "".join(line + "\n" for line in self.lines))


def _record(path: Path, n: int, line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise RunError(f"{path}:{n}: not a JSON line ({e.msg}); remove the line to resume") from None
