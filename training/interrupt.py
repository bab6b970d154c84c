"""Ctrl-C (SIGINT) and SIGTERM during training: the run finishes the step it is in, saves its
state at that step boundary and stops with `Interrupted`, whose `--resume` continues it bit for
bit. A second Ctrl-C stops at once (the state of the last save stays whole: xlmr/atomic.py).

Under torchrun every process gets the signal, not necessarily between the same two steps, so the
processes agree at each step boundary (one small all-reduce on the host, over gloo) and all stop
at the same one, after rank 0 has saved.
"""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from .config import RunError, TrainConfig

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(RunError):
    """The run stopped on a signal at a step boundary; its state is in `out`/last."""

    def __init__(self, signum: int, step: int, out: Path, cfg: TrainConfig, is_main: bool):
        self.signum, self.step, self.out, self.cfg, self.is_main = signum, step, Path(out), cfg, is_main
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; "
                         f"the training state is saved in {self.out / 'last'}")


class StopSignals:
    """While open, SIGINT and SIGTERM only note that the run should stop; `requested()` reads
    the note at a step boundary. Outside the main thread, where Python cannot take signals,
    nothing is installed and the signals act as they always do."""

    def __init__(self, world: int, is_main: bool):
        self.world, self.is_main, self.received = world, is_main, None
        self.previous = {}
        # A CPU tensor cannot cross NCCL: the note travels over gloo, on the host, with no device sync.
        self.group = dist.new_group(backend="gloo") if world > 1 and dist.get_backend() != "gloo" else None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._note) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def _note(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.received = self.received or signum
        if self.is_main:
            print(f"\n{signal.Signals(signum).name}: stopping after this step with the state saved "
                  "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def requested(self) -> int | None:
        """The signal any process has received, the same answer on every process; None if none."""
        if self.world == 1:
            return self.received
        note = torch.tensor([self.received or 0])
        dist.all_reduce(note, op=dist.ReduceOp.MAX, group=self.group)
        return int(note) or None

    def barrier(self) -> None:
        """Every process waits here until rank 0 has saved, so that none exits (and has torchrun
        stop the others) while the state is written."""
        if self.world > 1:
            dist.barrier(group=self.group)
