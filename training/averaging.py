"""Checkpoint averaging: a run's weights as the mean of its weights at the end of every epoch.

Picking the epoch with the best validation F1 on the training language (the book's recipe)
picks the weights that fit that language best, which is not what transfers best: the later
epochs drift further from the multilingual pretrained weights. Fine-tuning from one pretrained
start stays in one basin, so the epochs' weights can be averaged into one model that scores
like an ensemble of them at the cost of one (Schmidt, Vulić and Glavaš, "Free Lunch: Robust
Cross-Lingual Transfer via Model Checkpoint Averaging", ACL 2023). It selects nothing, so no
validation set of any other language is needed either. Measured in docs/zero-shot.md.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FILE = "average.safetensors"  # in last/, beside the weights, for --resume


class WeightAverage:
    """The running mean of a model's floating-point weights, one `add` per epoch."""

    def __init__(self):
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}  # fp32 on the CPU

    @torch.no_grad()
    def add(self, model: torch.nn.Module) -> None:
        self.count += 1
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            value = value.detach().float().cpu()
            if self.count == 1:
                self.mean[name] = value.clone()
            else:
                self.mean[name] += (value - self.mean[name]) / self.count  # mean_k = mean_{k-1} + (w - mean_{k-1}) / k

    @torch.no_grad()
    def load_into(self, model: torch.nn.Module) -> None:
        """Puts the mean into the model's own tensors, in their dtype and on their device."""
        if not self.count:
            raise ValueError("no weights have been averaged yet")
        state = model.state_dict()
        for name, mean in self.mean.items():
            state[name].copy_(mean.to(state[name].dtype))

    def save(self, folder: Path) -> None:
        if self.count:
            save_file({k: v.contiguous() for k, v in self.mean.items()}, folder / FILE,
                      metadata={"count": str(self.count)})

    @classmethod
    def load(cls, folder: Path) -> "WeightAverage":
        """The average saved in a run's last/ folder; an empty one where none was saved yet."""
        average = cls()
        path = folder / FILE
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                average.count = int(f.metadata()["count"])
            average.mean = load_file(path)
        return average
