"""The batches `benchmarks/throughput.py` times: a grid of random batches without padding, and
real PAN-X German batches as training and evaluation make them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from loaders.align import IGNORE
from loaders.collate import PaddingCollator
from loaders.panx import TAGS


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), -100 where no label

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


@dataclass
class Cell:
    name: str  # "8x128" or "panx-de"
    batches: list[Batch]

    def shape(self) -> tuple[float, float]:
        """(sentences, padded length) per batch, averaged."""
        n = len(self.batches)
        return (sum(b.input_ids.shape[0] for b in self.batches) / n, sum(b.input_ids.shape[1] for b in self.batches) / n)


def grid_cell(batch: int, seq: int, vocab: int, seed: int = 0) -> Cell:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)  # (B, T), no special or padding ids
    labels = torch.randint(0, len(TAGS), (batch, seq), generator=g)
    labels[:, 0] = labels[:, -1] = IGNORE  # <s> and </s> carry no label
    return Cell(f"{batch}x{seq}", [Batch(ids, torch.ones_like(ids), labels)])


def panx_cells(data_dir: str, spm: Path, n_batches: int) -> dict[str, Cell]:
    """Real German batches, as training (length-grouped, 24) and evaluation (sorted, 64) see them."""
    from loaders.align import encode_ner
    from loaders.batching import length_grouped_batches, sorted_batches
    from loaders.panx import swiss_corpus
    from xlmr.tokenizer import XLMRTokenizer

    data = encode_ner(swiss_corpus(data_dir, ["de"])["de"], XLMRTokenizer(spm))
    collate, cells = PaddingCollator(), {}
    for mode, split, batches in (
            ("train", "train", lambda n: length_grouped_batches(n, 24, seed=42, epoch=0)[:n_batches]),
            ("infer", "validation", lambda n: sorted_batches(n, 64)[::max(1, len(n) // 64 // n_batches)][:n_batches])):
        ids, labels = list(data[split]["input_ids"]), list(data[split]["labels"])
        chosen = batches([len(x) for x in ids])
        cells[mode] = Cell("panx-de", [Batch(**collate([{"input_ids": ids[i], "labels": labels[i]} for i in b]))
                                       for b in chosen])
    return cells
