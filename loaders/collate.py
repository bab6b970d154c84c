"""Padding collator: a list of encoded sentences -> one padded batch of tensors."""
from __future__ import annotations

import torch

from xlmr.tokenizer import PAD

from .align import IGNORE


class PaddingCollator:
    """Pads input_ids with <pad> (1), labels with -100 and builds the attention mask; each row's
    real tokens come first (the model's `lengths` argument relies on it).
    `pad_to_multiple_of=8` rounds the length up, which tensor cores prefer on GPUs.
    `pin_memory=True` (for a GPU: runtime.devices.pins_batches) returns page-locked tensors, so
    that `.to(device, non_blocking=True)` copies them without waiting."""

    def __init__(self, pad_id: int = PAD, pad_to_multiple_of: int | None = None, pin_memory: bool = False):
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of
        self.pin_memory = pin_memory

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        T = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            T = -(-T // self.multiple) * self.multiple
        B = len(features)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, T), dtype=torch.long)
        labels = torch.full((B, T), IGNORE, dtype=torch.long) if "labels" in features[0] else None
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[i, :n] = torch.tensor(f["input_ids"])
            attention_mask[i, :n] = 1
            if labels is not None:
                labels[i, :n] = torch.tensor(f["labels"])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if labels is not None:
            batch["labels"] = labels
        return {k: v.pin_memory() for k, v in batch.items()} if self.pin_memory else batch
