"""What a run's training steps achieved: samples, tokens and model FLOPs per second, padding,
and peak memory; and the model-FLOP count itself, which benchmarks/throughput.py uses too, so
that the training log's MFU and the benchmark's are the same number for the same work."""
from __future__ import annotations

import resource

import torch

from .state import TrainState


def multiplying_parameters(model) -> int:
    """N: the parameters a token's forward multiplies by. The embedding tables are looked up,
    not multiplied, so they are left out (LayerNorm and biases are in, as PaLM's count has them)."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def attention_pairs(attention_mask: torch.Tensor) -> int:
    """(query, key) pairs of a padded batch: each real token's query meets every one of the
    batch's T positions (the padded length), as the attention kernels compute them."""
    return int(attention_mask.sum()) * attention_mask.shape[-1]


def model_flops(model, tokens: int, pairs: int, training: bool) -> float:
    """Model FLOPs of `tokens` real tokens whose queries meet `pairs` keys in all.

    Forward, per token: 2N (a multiply and an add per multiplying parameter), and per layer
    attention's two products that hold no parameters, QK^T and the weighted sum of V, 2H FLOPs
    each per (query, key) pair: 2N + 4LHT for a token in a batch padded to T. A training step is
    3x the forward: the backward computes two products for each of the forward's (the gradients
    of the inputs and of the weights). Padding positions are not model FLOPs, so MFU counts the
    work the real tokens need, not what a kernel spent on padding."""
    c = model.config
    forward = 2 * multiplying_parameters(model) * tokens + 4 * c.num_hidden_layers * c.hidden_size * pairs
    return 3 * forward if training else forward


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def throughput(state: TrainState, model, device: torch.device, peak_tflops: float | None) -> dict:
    seconds = max(state.train_seconds, 1e-9)
    achieved = model_flops(model, state.tokens, state.attention_pairs, training=True) / seconds
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
