"""What a run trains with, by the book's recipe: batches per epoch, AdamW's parameter groups,
and the linear learning-rate schedule."""
from __future__ import annotations

import torch

from loaders.batching import length_grouped_batches, random_batches
from xlmr.embedding_grad import RowSparseGrad

from .config import TrainConfig
from .row_adamw import RowAdamW


def epoch_batches(cfg: TrainConfig, lengths, epoch: int, shares: int) -> list[list[int]]:
    """The global batches of one epoch. A last batch too small to give every process and
    micro-batch a sentence is dropped (only when there are several)."""
    if cfg.random_batches:
        batches = random_batches(len(lengths), cfg.batch_size, cfg.seed, epoch)
    else:
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)
    return [b for b in batches if len(b) >= shares]


def build_optimizer(model, cfg: TrainConfig, row_grad: RowSparseGrad | None = None) -> torch.optim.Optimizer:
    """AdamW with the Trainer's groups: no weight decay on biases and LayerNorm weights. With a
    row-sparse embedding gradient, the embedding's share of the work follows the rows touched
    (RowAdamW, same results); otherwise PyTorch's fused AdamW, one kernel over all parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(".bias") or "norm." in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if row_grad is not None:
        return RowAdamW(groups, row_grad, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, fused=True)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
