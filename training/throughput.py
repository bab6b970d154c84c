"""What a run's training steps achieved: samples, tokens and model FLOPs per second, padding,
and peak memory."""
from __future__ import annotations

import resource

import torch

from .state import TrainState


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def throughput(state: TrainState, model, device: torch.device, peak_tflops: float | None) -> dict:
    seconds = max(state.train_seconds, 1e-9)
    # Training FLOPs per token ~ 6 x the parameters that multiply (not the embedding lookups).
    flops_per_token = 6 * sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    achieved = flops_per_token * state.padded_tokens / seconds
    result = {
        "train_seconds": seconds,
        "samples_per_second": state.samples / seconds,
        "tokens_per_second": state.tokens / seconds,
        "padded_tokens_per_second": state.padded_tokens / seconds,
        "padding_share": 1 - state.tokens / max(state.padded_tokens, 1),
        "model_tflops_per_second": achieved / 1e12,
        "peak_memory_mb": peak_memory_mb(device),
    }
    if peak_tflops:
        result["mfu"] = achieved / (peak_tflops * 1e12)
    return result
