"""Training labels on a whole DatasetDict (loaders/align.py) worked by hand on the real
vocabulary: every column `encode_ner` adds, the truncation warning and its 512-token default,
and the label lists of the splits. Written for the mutants the older tests let through
(docs/testing.md)."""
from __future__ import annotations

import warnings

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from loaders.align import encode_ner, label_names

PANX = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
O, B_LOC = 0, 5


def split(sentences, tags, names=PANX) -> Dataset:
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    return Dataset.from_dict({"tokens": sentences, "ner_tags": tags}, features=features)


RHEIN = ["Der", "Fluss", "(", "Rhein", ")", "."]  # <s> ▁Der ▁Flu s s ▁( ▁Rhein ▁) ▁ . </s>
RHEIN_TAGS = [O, B_LOC, O, B_LOC, O, O]


def test_every_column_encode_ner_adds_by_hand(tokenizer):
    ds = DatasetDict(train=split([RHEIN], [RHEIN_TAGS]), validation=split([["Paris"]], [[B_LOC]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is truncated: no warning
        encoded = encode_ner(ds, tokenizer)
    row = encoded["train"][0]
    assert tokenizer.convert_ids_to_tokens(row["input_ids"]) == [
        "<s>", "▁Der", "▁Flu", "s", "s", "▁(", "▁Rhein", "▁)", "▁", ".", "</s>"]
    assert row["word_ids"] == [-1, 0, 1, 1, 1, 2, 3, 4, 5, 5, -1]  # -1 for <s> and </s>, not None
    assert row["word_heads"] == [1, 2, 5, 6, 7, 9]  # '.' past its bare '▁' (unspaced="runs")
    assert row["labels"] == [-100, O, B_LOC, -100, -100, O, B_LOC, O, -100, O, -100]
    assert row["word_glued"] == [False] * 6
    assert encoded["validation"][0]["labels"] == [-100, B_LOC, -100]
    # The book's alignment keeps '.''s label on its bare '▁'.
    book = encode_ner(ds, tokenizer, unspaced="words")["train"][0]
    assert book["word_heads"] == [1, 2, 5, 6, 7, 8]
    assert book["labels"] == [-100, O, B_LOC, -100, -100, O, B_LOC, O, O, -100, -100]


def test_truncation_is_counted_and_the_default_is_512_tokens(tokenizer):
    assert tokenizer.encode_words(["Haus"]).input_ids[1:-1] == tokenizer.convert_tokens_to_ids(["▁Haus"])
    long = ["Haus"] * 511  # <s>, 511 pieces, </s>: 513 tokens, one over the model's 512
    ds = DatasetDict(train=split([long, ["Haus"] * 510, RHEIN], [[O] * 511, [O] * 510, RHEIN_TAGS]))
    with pytest.warns(UserWarning, match=r"^1 sentence\(s\) longer than 512 tokens were truncated"):
        encoded = encode_ner(ds, tokenizer)["train"]
    assert [len(r["input_ids"]) for r in encoded] == [512, 512, 11]
    assert encoded[0]["input_ids"][-1] == 2 and encoded[0]["word_heads"][-1] == -1  # </s> kept; word 510 cut off
    with pytest.warns(UserWarning, match=r"^3 sentence\(s\) longer than 8 tokens"):
        short = encode_ner(ds, tokenizer, max_length=8)["train"]
    assert short[2]["labels"] == [-100, O, B_LOC, -100, -100, O, B_LOC, -100]


def test_label_names_of_splits_that_agree_and_that_do_not():
    agree = DatasetDict(train=split([["a"]], [[0]]), test=split([["b"]], [[1]]))
    assert label_names(agree) == PANX
    assert label_names(agree["train"]) == PANX
    other = ["O", "B-LOC", "I-LOC"]
    for order in (("train", "test"), ("test", "train")):  # the odd split first or last
        splits = {order[0]: split([["a"]], [[0]]), order[1]: split([["b"]], [[0]], names=other)}
        with pytest.raises(ValueError, match="different label lists"):
            label_names(DatasetDict(splits))
    three = DatasetDict(a=split([["a"]], [[0]]), b=split([["b"]], [[0]]), c=split([["c"]], [[0]], names=other))
    with pytest.raises(ValueError, match="different label lists"):
        encode_ner(three, tokenizer=None)  # refused before any tokenising
