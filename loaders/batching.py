"""Which sentences go into which batch.

Training: length-grouped batches. PAN-X sentences range from 3 to 100+ tokens, and a batch is
padded to its longest sentence, so random batches are mostly padding. Sentences are shuffled,
cut into mega-batches of `mega * batch_size`, sorted by length inside each mega-batch and cut into
batches; the order of the batches is then shuffled. Seeded per epoch, so a resumed run sees the
same batches.

Evaluation: batches sorted by length; `restore_order` puts the outputs back.
"""
from __future__ import annotations

import numpy as np


def length_grouped_batches(lengths, batch_size: int, seed: int, epoch: int = 0, mega: int = 50) -> list[list[int]]:
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    batches = []
    step = mega * batch_size
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(n: int, batch_size: int, seed: int, epoch: int = 0) -> list[list[int]]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]


def sorted_batches(lengths, batch_size: int) -> list[list[int]]:
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def restore_order(batches: list[list[int]], outputs: list) -> list:
    """outputs[k] belongs to the k-th index of the flattened batches; return them by index."""
    flat = [i for b in batches for i in b]
    result = [None] * len(flat)
    for i, out in zip(flat, outputs):
        result[i] = out
    return result


def padding_share(batches: list[list[int]], lengths) -> float:
    """Padding positions as a share of all positions when each batch pads to its longest."""
    lengths = np.asarray(lengths)
    total = sum(len(b) * lengths[b].max() for b in batches)
    return 1.0 - lengths.sum() / total
