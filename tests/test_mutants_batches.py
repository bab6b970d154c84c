"""The padding collator and the batch samplers, worked by hand on small cases: the cases the
older tests (the collator against transformers' on 16 French sentences, the samplers' padding
share) let mutants through (docs/testing.md)."""
from __future__ import annotations

import numpy as np
import torch

from loaders.batching import length_grouped_batches, padding_share, random_batches, sorted_batches
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


def test_length_grouped_batches_are_sorted_slices_of_shuffled_mega_batches():
    """The documented construction, checked as properties: the sentences shuffled by the epoch's
    generator, cut into mega-batches of 50 x batch_size, each sorted longest first and cut into
    batches (a short one last, holding the shortest sentences, as transformers'
    LengthGroupedSampler does), the batches then shuffled."""
    lengths = [int(x) for x in np.random.default_rng(7).integers(3, 120, size=1010)]  # a list, as training has
    seed, epoch, size = 11, 2, 4
    batches = length_grouped_batches(lengths, size, seed=seed, epoch=epoch)
    assert sorted(i for b in batches for i in b) == list(range(1010))
    order = np.random.default_rng([seed, epoch]).permutation(1010)  # the first draw: the sentences shuffled
    mega = [set(order[s:s + 50 * size].tolist()) for s in range(0, 1010, 50 * size)]  # 5 of 200, one of 10
    chunk_of = [next(k for k, m in enumerate(mega) if set(b) <= m) for b in batches]  # each inside one
    for k, m in enumerate(mega):
        own = sorted((b for b, c in zip(batches, chunk_of) if c == k),
                     key=lambda b: (-max(lengths[i] for i in b), -min(lengths[i] for i in b)))
        assert sum(len(b) for b in own) == len(m)
        assert [len(b) for b in own] == [size] * (len(m) // size) + ([len(m) % size] if len(m) % size else [])
        for longer, shorter in zip(own, own[1:]):
            assert min(lengths[i] for i in longer) >= max(lengths[i] for i in shorter)
    assert chunk_of != sorted(chunk_of)  # the batches are shuffled, not left mega-batch by mega-batch
    assert length_grouped_batches(lengths, size, seed=seed) == length_grouped_batches(lengths, size, seed=seed, epoch=0)


def test_random_batches_are_slices_of_the_epochs_permutation():
    order = np.random.default_rng([3, 0]).permutation(10).tolist()
    assert random_batches(10, 4, seed=3) == [order[0:4], order[4:8], order[8:10]]
    assert random_batches(10, 4, seed=3, epoch=1) != random_batches(10, 4, seed=3)


def test_sorted_batches_longest_first_and_ties_in_input_order():
    assert sorted_batches([2, 5, 5, 1, 5], 2) == [[1, 2], [4, 0], [3]]
    assert padding_share([[1, 2], [4, 0], [3]], [2, 5, 5, 1, 5]) == 1 - 18 / (10 + 10 + 1)
