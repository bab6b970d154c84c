"""Peak memory of a stretch of work: what it adds on top of what was there when it started.

CUDA: the caching allocator's peak. CPU (Linux): the process's peak resident set, reset through
/proc/self/clear_refs. Memory freed earlier but kept by malloc would let a later allocation grow
without raising the resident set, so freed memory is handed back first (malloc_trim); pages the
work itself frees and reuses are, rightly, counted once. Elsewhere: not measured (None).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

import torch

from runtime.devices import wait_for

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class PeakMemory:
    """start(); ...work...; stop(); peak_mb(weights) = the weights plus the most the work added."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.base = self.added = None

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            wait_for(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif STATUS.exists() and CLEAR_REFS.exists():
            _malloc_trim()
            CLEAR_REFS.write_text("5")  # 5: reset the peak resident set size to the current one
            self.base = _status_kb("VmRSS") * 1024

    def stop(self) -> None:
        if self.base is None:
            return
        if self.device.type == "cuda":
            wait_for(self.device)
            self.added = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.added = _status_kb("VmHWM") * 1024 - self.base

    def peak_mb(self, weights_bytes: int) -> float | None:
        return None if self.added is None else (weights_bytes + self.added) / 2**20
