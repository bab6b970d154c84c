"""The resumable state of a run, in one place: the counters of `TrainState`, and on disk in
last/ the weights, the optimizer, the schedule, the gradient scaler and every random generator.
`--resume` continues from it exactly: the resumed run's weights equal an uninterrupted run's."""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xlmr.atomic import write_text_atomic

from .config import RunError


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished
    step: int = 0  # optimizer steps in all
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


def save_state(folder: Path, model, optimizer, scheduler, scaler, state: dict) -> None:
    """Written to last.tmp/ and swapped in whole, so a kill at any moment leaves either the old
    state or the new one, never a mix: killed between the two renames, the old state waits in
    last.old/ (see `resumable_state`)."""
    tmp, old = folder.with_name("last.tmp"), folder.with_name("last.old")
    shutil.rmtree(tmp, ignore_errors=True)
    if folder.exists():  # a kill during the last clean-up can leave last.old/ behind
        shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def resumable_state(run: Path) -> Path | None:
    """The saved state of a run: last/, or last.old/ when a kill fell between save_state's two
    renames (last/ is then absent and last.old/ still whole)."""
    for name in ("last", "last.old"):
        if (run / name / "state.json").is_file():
            return run / name
    return None


def load_state(folder: Path, model, optimizer, scheduler, scaler) -> dict:
    if not (folder / "state.json").is_file():
        raise RunError(f"nothing to resume in {folder}: no state.json (was the run saved?)")
    model.load_state_dict(load_file(folder / "model.safetensors"))
    saved = torch.load(folder / "optimizer.pt", weights_only=False)  # our own file: RNG states are not tensors
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng"]["torch"])
    random.setstate(saved["rng"]["python"])
    np.random.set_state(saved["rng"]["numpy"])
    if saved["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    return json.loads((folder / "state.json").read_text())


class MetricsLog:
    """metrics.jsonl, one JSON object a line. On resume, lines past the resumed step are dropped
    so the file reads as one uninterrupted run."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None = None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            write_text_atomic(path, "".join(line + "\n" for line in kept))
        elif enabled:
            path.write_text("")

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
