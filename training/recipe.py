"""What a run trains with, by the book's recipe: batches per epoch, AdamW's parameter groups, the
linear learning-rate schedule, and one optimizer step (clip, AdamW or a skip, clear). The
training loop and `benchmarks/throughput.py` both step through `apply_gradients`, so the
benchmark times the loop's own update."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from loaders.batching import length_grouped_batches, random_batches
from .embedding_grad import RowSparseGrad

from .config import TrainConfig
from .prepare import keeps_embedding_rows
from .row_adamw import RowAdamW, clip_grad_norm_rows


def epoch_batches(cfg: TrainConfig, lengths, epoch: int, shares: int) -> list[list[int]]:
    """The global batches of one epoch. A last batch too small to give every process and
    micro-batch a sentence is dropped (only when there are several)."""
    if cfg.random_batches:
        batches = random_batches(len(lengths), cfg.batch_size, cfg.seed, epoch)
    else:
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)
    return [b for b in batches if len(b) >= shares]


def row_sparse_embedding(model, world: int) -> RowSparseGrad | None:
    """The word embedding's gradient kept per touched row, where training/prepare.py's
    `keeps_embedding_rows` says so for the model's device (one CPU process). The dense
    gradient, its norm and its AdamW update walk all 250k rows while a batch touches a few
    hundred (see training/embedding_grad.py, training/row_adamw.py); elsewhere the dense path
    (fused AdamW, dense clipping)."""
    word = model.encoder.embeddings.word
    return RowSparseGrad(word) if keeps_embedding_rows(word.weight.device, world)[0] else None


def own_rates(model) -> dict[int, float]:
    """id(parameter) -> learning-rate factor, for the parameters of the modules that set their own
    (an `lr_factor` attribute, as a CRF head's scores do)."""
    return {id(p): m.lr_factor for m in model.modules() if hasattr(m, "lr_factor") for p in m.parameters()}


def parameter_groups(model, cfg: TrainConfig) -> list[dict]:
    """The Trainer's groups: weight decay except on biases and LayerNorm weights. A module that
    sets its own learning-rate factor gets a group of its own at factor x lr, without weight decay."""
    rates, groups = own_rates(model), {}
    for name, p in model.named_parameters():
        if id(p) in rates:
            kind, group = rates[id(p)], {"weight_decay": 0.0, "lr": cfg.lr * rates[id(p)]}
        elif name.endswith(".bias") or "norm." in name:
            kind, group = "no_decay", {"weight_decay": 0.0, "lr": cfg.lr}
        else:
            kind, group = "decay", {"weight_decay": cfg.weight_decay, "lr": cfg.lr}
        groups.setdefault(kind, {"params": [], **group})["params"].append(p)
    first = [groups.pop(k) for k in ("decay", "no_decay") if k in groups]
    return first + list(groups.values())


def build_optimizer(model, cfg: TrainConfig, row_grad: RowSparseGrad | None = None) -> torch.optim.Optimizer:
    """AdamW over `parameter_groups`. With a row-sparse embedding gradient, the embedding's share
    of the work follows the rows touched (RowAdamW, same results); otherwise PyTorch's fused
    AdamW, one kernel over all parameters."""
    groups = parameter_groups(model, cfg)
    if row_grad is not None:
        return RowAdamW(groups, row_grad, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, fused=True)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Update(NamedTuple):
    """What one optimizer step read and did: the loss (when given) and the gradient norm before
    clipping, and whether the weights were updated."""
    loss: float | None
    grad_norm: float
    applied: bool


def apply_gradients(model, optimizer, row_grad: RowSparseGrad | None, scaler, max_norm: float,
                    loss: torch.Tensor | None = None) -> Update:
    """After backward: clip the gradient norm, step the optimizer, clear the gradients. With a
    row gradient, the embedding's share of the norm and the update follow the touched rows alone.

    A step whose gradient norm (or `loss`) is not finite is skipped: no update, the gradients
    cleared; under fp16 the scaler lowers its scale as on any overflow (its unscale_ found the
    same inf or nan). The loss and the norm are read in one device-to-host copy: the one read a
    step needs, to apply or skip."""
    if row_grad:
        row_grad.densify()
    if scaler:
        scaler.unscale_(optimizer)
    if row_grad:
        grad_norm = clip_grad_norm_rows(list(model.parameters()), row_grad, max_norm)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    read = [grad_norm.detach().float()] + ([loss.detach().float().to(grad_norm.device)] if loss is not None else [])
    values = torch.stack(read).tolist()
    applied = all(math.isfinite(v) for v in values)
    if applied and scaler:
        scaler.step(optimizer)
    elif applied:
        optimizer.step()
    if scaler:
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if row_grad:
        row_grad.clear()
    return Update(values[1] if loss is not None else None, values[0], applied)
