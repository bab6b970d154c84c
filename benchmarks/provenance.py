"""Where a measurement comes from, recorded in every result file the benchmarks write: when,
which code (the commit, and whether the tree had changes), which machine (the CPU's model and
the flags that decide its speed; the GPU), which torch, and the command that reproduces it.

A number without these cannot be compared with another: a bf16 matrix product ran at ~400
GFLOP/s on an AMD EPYC with AVX-512 BF16 and at ~1 on one with AVX2 only (docs/speed.md).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

from evaluation.reports import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
# The instructions that decide fp32, bf16 and int8 speed on x86 (/proc/cpuinfo's names).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
LIBRARIES = ("transformers", "onnxruntime", "numpy")
# Variables that cap the instructions the libraries use: set, they make a CPU run as a lesser one
# (docs/speed.md imitates an AVX2-only CPU so), and its flags no longer say what ran.
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def cpu_description() -> tuple[str, list[str]]:
    """(model name, which of CPU_FLAGS it has) from /proc/cpuinfo; elsewhere, PyTorch's view."""
    name, flags = platform.processor() or "unknown CPU", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    if flags is None:
        from runtime.precision import cpu_capability

        cap = cpu_capability()
        flags = {f for f, on in (("avx2", cap["avx2"]), ("avx512f", cap["avx512"]),
                                 ("avx512_bf16", cap["avx512_bf16"]), ("amx_tile", cap["amx"])) if on}
    return name, [f for f in CPU_FLAGS if f in flags]


def commit() -> str:
    """HEAD's hash, with " dirty" when tracked files differ from it; "unknown" outside a checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        return head + (" dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def command_line(script: str, argv: list[str]) -> str:
    """The command that reruns a benchmark module from the repository root."""
    return " ".join(["python", "-m", f"benchmarks.{Path(script).stem}", *map(shlex.quote, argv)])


def provenance(script: str, argv: list[str], device: torch.device | str = "cpu") -> dict:
    """Taken once when a run starts (its own result files must not make the tree look dirty)."""
    device = torch.device(device)
    name, flags = cpu_description()
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit(),
              "cpu": name, "cpu_flags": flags, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "isa_limits": {k: os.environ[k] for k in ISA_LIMITS if k in os.environ},
              "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch": torch.__version__, "command": command_line(script, argv)}
    for lib in LIBRARIES:
        try:
            record[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            record[lib] = None
    return record


def summary(p: dict) -> str:
    """Provenance as the Markdown lines that head a result file."""
    hardware = p["gpu"] or f"{p['cpu']}, {p['threads']} threads"
    flags = p["cpu_flags"]  # a list; a sentence in files whose run did not record them
    flags = flags if isinstance(flags, str) else " ".join(flags) or "none of " + " ".join(CPU_FLAGS)
    if p.get("isa_limits"):  # absent from files written before it was recorded
        limits = " ".join(f"{k}={v}" for k, v in p["isa_limits"].items())
        flags += f"; limited by {limits}, PyTorch's kernels {p['aten_cpu_capability']}"
    versions = ", ".join(f"{lib} {p[lib]}" for lib in ("torch", *LIBRARIES) if p.get(lib))
    notes = [v for k, v in p.items() if k.endswith("_note")]  # what a file filled in afterwards says of itself
    lines = [f"Measured {p['date']} on {hardware} (CPU flags: {flags}); {versions}.",
             f"Commit {p['commit']}.", f"Command: `{p['command']}`"] + ([f"Notes: {'; '.join(notes)}."] if notes else [])
    return "  \n".join(lines) + "\n"  # two spaces: a Markdown line break


def write_result(path: Path, report: dict, record: dict, markdown: str | None = None) -> None:
    """`path` (.json) with the provenance first, and with `markdown` a .md beside it headed by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"provenance": record} | report)
    if markdown is not None:
        write_text_atomic(path.with_suffix(".md"), summary(record) + "\n" + markdown)
