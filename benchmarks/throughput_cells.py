"""The batches `benchmarks/throughput.py` times: a grid of random batches without padding, the
same shapes with sentences of spread lengths (ragged), and real PAN-X German batches as
training and evaluation make them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from loaders.align import IGNORE
from loaders.collate import PaddingCollator
from loaders.panx import TAGS

# Beside the repository, as ../shared is laid out (a clone passes --spm).
DEFAULT_SPM = Path(__file__).resolve().parents[2] / "shared/models/xlm-roberta-tokenizer/sentencepiece.bpe.model"


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), -100 where no label
    lengths: list[int] = field(init=False)  # (B,) real tokens per row, known on the host as a collator knows them

    def __post_init__(self):
        self.lengths = self.attention_mask.sum(1).tolist()

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


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


def ragged_cell(batch: int, seq: int, vocab: int, seed: int = 0) -> Cell:
    """`batch` random sentences whose lengths are spread evenly from seq / 8 to seq, padded to seq
    (~44% padding): what dropping padding (variable-length attention) is for."""
    cell = grid_cell(batch, seq, vocab, seed)
    b = cell.batches[0]
    lengths = torch.linspace(max(1, seq // 8), seq, batch).round().long()  # (B,)
    real = torch.arange(seq) < lengths[:, None]  # (B, T)
    ids = b.input_ids.masked_fill(~real, 1)  # the padding id of XLM-R; the mask is what hides it
    labels = b.labels.masked_fill(~real, IGNORE)
    labels[torch.arange(batch), lengths - 1] = IGNORE  # </s>
    return Cell(f"ragged-{batch}x{seq}", [Batch(ids, real.long(), labels)])


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
