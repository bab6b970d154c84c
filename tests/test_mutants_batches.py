"""The padding collator and the batch samplers, worked by hand on small cases: the cases the
older tests (the collator against transformers' on 16 French sentences, the samplers' padding
share) let mutants through (docs/testing.md)."""
from __future__ import annotations

import torch

from loaders.collate import PaddingCollator


def test_a_batch_of_one_sentence_padded_to_a_multiple_by_hand():
    # The last batch of an epoch can hold a single sentence: <s> 5 </s>, the word's label on 5.
    batch = PaddingCollator(pad_to_multiple_of=8)([{"input_ids": [0, 5, 2], "labels": [-100, 3, -100]}])
    assert batch["input_ids"].tolist() == [[0, 5, 2, 1, 1, 1, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 3, -100, -100, -100, -100, -100, -100]]
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long


def test_a_batch_without_labels_has_none():
    # What prediction collates: no labels key in, none out; padded to the longest, no multiple.
    batch = PaddingCollator()([{"input_ids": [0, 7, 8, 2]}, {"input_ids": [0, 9, 2]}])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].tolist() == [[0, 7, 8, 2], [0, 9, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
