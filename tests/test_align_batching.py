"""Label alignment, the padding collator and the batch samplers."""
from __future__ import annotations

import numpy as np
import torch

from loaders.align import align_labels, encode_ner
from loaders.batching import length_grouped_batches, padding_share, random_batches, restore_order, sorted_batches
from loaders.collate import PaddingCollator

O, B_LOC = 0, 5


def test_align_hand_checked(tokenizer):
    # Der Fluss ( Rhein ) .   ->  <s> ▁Der ▁Flu s s ▁( ▁Rhein ▁) ▁ . </s>
    words = ["Der", "Fluss", "(", "Rhein", ")", "."]
    enc = tokenizer.encode_words(words)
    assert tokenizer.convert_ids_to_tokens(enc.input_ids) == ["<s>", "▁Der", "▁Flu", "s", "s", "▁(", "▁Rhein", "▁)", "▁", ".", "</s>"]
    labels = align_labels(enc.word_ids, [O, B_LOC, O, B_LOC, O, O])
    assert labels == [-100, O, B_LOC, -100, -100, O, B_LOC, O, O, -100, -100]  # the '.' label sits on '▁'


def test_a_label_moves_off_a_bare_space_piece(tokenizer):
    # "." is cut into a bare '▁' and '.': with our alignment ("runs") its label sits on '.', the
    # piece that holds the character; the book's ("words") keeps it on '▁'.
    words = ["Der", "Fluss", "(", "Rhein", ")", "."]
    ours = tokenizer.encode_words_batch([words], unspaced="runs")[0]
    book = tokenizer.encode_words_batch([words], unspaced="words")[0]
    assert ours.input_ids == book.input_ids and ours.word_ids == book.word_ids
    assert book.word_heads == [1, 2, 5, 6, 7, 8]
    assert ours.word_heads == [1, 2, 5, 6, 7, 9]
    assert ours.word_glued == [False] * 6  # '.' follows its own word's '▁', not another word
    labels = align_labels(ours.word_ids, [O, B_LOC, O, B_LOC, O, O], word_heads=ours.word_heads)
    assert labels == [-100, O, B_LOC, -100, -100, O, B_LOC, O, -100, O, -100]


def test_collator_matches_transformers(tokenizer, panx_dir):
    from transformers import DataCollatorForTokenClassification, XLMRobertaTokenizerFast

    from loaders.panx import load_panx

    ds = load_panx("fr", panx_dir)
    ds["validation"] = ds["validation"].select(range(16))
    encoded = encode_ner(ds, tokenizer)["validation"]
    features = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in encoded]
    ours = PaddingCollator(pad_to_multiple_of=8)(features)
    hf_tok = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer.path.with_name("tokenizer.json")))
    ref = DataCollatorForTokenClassification(hf_tok, pad_to_multiple_of=8, return_tensors="pt")(
        [dict(f, attention_mask=[1] * len(f["input_ids"])) for f in features])
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(ours[key], ref[key]), key


def test_length_grouped_batches():
    lengths = np.random.default_rng(0).integers(3, 120, size=5000)
    grouped = length_grouped_batches(lengths, 24, seed=1, epoch=0)
    flat = sorted(i for b in grouped for i in b)
    assert flat == list(range(5000))  # every sentence once
    assert grouped == length_grouped_batches(lengths, 24, seed=1, epoch=0)
    assert grouped != length_grouped_batches(lengths, 24, seed=1, epoch=1)
    assert padding_share(grouped, lengths) < 0.5 * padding_share(random_batches(5000, 24, 1), lengths)


def test_padding_share_by_hand():
    assert padding_share([[0, 1], [2]], [2, 4, 3]) == 1 - 9 / (2 * 4 + 3)


def test_sorted_batches_restore_order():
    lengths = [5, 1, 9, 3, 7]
    batches = sorted_batches(lengths, 2)
    assert batches == [[2, 4], [0, 3], [1]]
    outputs = [lengths[i] * 10 for b in batches for i in b]
    assert restore_order(batches, outputs) == [50, 10, 90, 30, 70]
