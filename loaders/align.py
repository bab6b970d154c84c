"""Tokenise NER sentences (PAN-X's or the user's) and put each word's tag on its sub-words.

A word's head (its first sub-word, or the next one after a bare '▁': xlmr/alignment.py) carries the word's tag; other
sub-words and the special tokens get -100, which CrossEntropyLoss ignores, so every word is
scored exactly once.
"""
from __future__ import annotations

import warnings

from datasets import DatasetDict

from xlmr import alignment
from xlmr.decoding import IGNORE_INDEX
from xlmr.tokenizer import XLMRTokenizer

IGNORE = IGNORE_INDEX


def align_labels(word_ids: list[int | None], word_labels: list[int], word_heads: list[int] | None = None) -> list[int]:
    """Token labels from word labels: each word's tag on its head (Encoding.word_heads; its first
    sub-word when not given), -100 everywhere else."""
    if word_heads is None:
        word_heads = alignment.word_heads(word_ids, len(word_labels))
    labels = [IGNORE] * len(word_ids)
    for w, h in enumerate(word_heads):
        if alignment.owns_head(word_ids, word_heads, w):
            labels[h] = word_labels[w]
    return labels


def label_names(ds) -> list[str]:
    """The label list of a Dataset (or of a DatasetDict's splits, which must agree)."""
    splits = list(ds.values()) if isinstance(ds, DatasetDict) else [ds]
    names = [s.features["ner_tags"].feature.names for s in splits]
    if any(n != names[0] for n in names):
        raise ValueError(f"the splits have different label lists: {names}")
    return list(names[0])


def encode_ner(ds: DatasetDict, tokenizer: XLMRTokenizer, max_length: int = 512, unspaced: str = "runs") -> DatasetDict:
    """Adds input_ids, labels, word_ids (-1 for special tokens) and word_heads (the token that
    carries each word's label) and word_glued (its piece has no '▁'; see Encoding) to every split. Runs of Han/kana words are tokenised
    as one string unless unspaced="words"; a piece then carries the tag of the word it starts in.
    Sentences longer than max_length are truncated, never dropped, and counted in a warning."""
    label_names(ds)  # the splits must agree on their labels
    truncated = []

    def encode(batch):
        encodings = tokenizer.encode_words_batch(batch["tokens"], max_length=max_length, unspaced=unspaced)
        truncated.extend(e.truncated for e in encodings if e.truncated)
        return {
            "input_ids": [e.input_ids for e in encodings],
            "labels": [align_labels(e.word_ids, tags, e.word_heads)
                       for e, tags in zip(encodings, batch["ner_tags"])],
            "word_ids": [[-1 if w is None else w for w in e.word_ids] for e in encodings],
            "word_heads": [e.word_heads for e in encodings],
            "word_glued": [e.word_glued for e in encodings],
        }

    # No cache: the truncation count is gathered as the function runs.
    encoded = ds.map(encode, batched=True, batch_size=1000, load_from_cache_file=False)
    if truncated:
        warnings.warn(f"{len(truncated)} sentence(s) longer than {max_length} tokens were truncated "
                      f"(their last words are not scored)", stacklevel=2)
    return encoded
