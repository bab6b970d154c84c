"""What differs between the devices a model runs on, in one place: waiting for the device that
was timed, a process's own GPU under torchrun, whether a GPU computes bf16 natively, and whether
batches are pinned for the copy to it."""
from __future__ import annotations

import contextlib
import os

import torch


def wait_for(device: torch.device | str) -> None:
    """Block until the work queued on `device` is done, before a clock is read. torch.cuda's
    synchronize() with no argument waits for the *current* GPU, which is not the timed one when
    a benchmark runs on cuda:1; CPU work is done when its call returns."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def process_device(device_arg: str | None) -> torch.device:
    """This process's device. Under torchrun (LOCAL_RANK set) a bare "cuda" means this process's
    own GPU, cuda:LOCAL_RANK, made the current one, so that every rank does not land on cuda:0.
    Call it before torch.distributed.init_process_group: NCCL binds a process to the current
    GPU when its group starts. No argument: cuda where there is one, else the CPU."""
    device = torch.device(device_arg or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def cuda_bf16_native(device: torch.device | str | None = None) -> bool:
    """Whether the GPU computes bf16 in hardware (compute capability 8.0 and later). PyTorch's
    is_bf16_supported() also says yes where bf16 is emulated (V100, T4), far below fp16 there."""
    device = torch.device(device) if device is not None else None
    chosen = device is not None and device.index is not None  # else the current GPU is asked
    with torch.cuda.device(device) if chosen else contextlib.nullcontext():
        return torch.cuda.is_bf16_supported(including_emulation=False)


def pins_batches(device: torch.device | str) -> bool:
    """Batches built on the host for a GPU are pinned (page-locked), so that the copy to it can
    run asynchronously (`non_blocking=True`) instead of being staged through pageable memory."""
    return torch.device(device).type == "cuda"
