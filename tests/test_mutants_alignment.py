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


# -- xlmr/alignment.py by hand: the edge cases the tokenizer's own output rarely reaches ------------

def test_word_heads_of_words_without_a_token():
    from xlmr import alignment

    # Word 0 has no token and no earlier word to sit in: -1. Word 2 sits inside word 1's piece.
    assert alignment.word_heads([None, 1, 1, 3, None], 4) == [-1, 1, 1, 3]
    assert alignment.word_heads([-1, 0, 2, -1], 3) == [1, 1, 2]  # a dataset column's -1 for <s>, </s>


def test_a_word_that_is_only_a_bare_space_keeps_it():
    from xlmr import alignment

    # ids: <s>=0, bare '▁'=9, 10 and 11 pieces: word 0 is a lone '▁' (its next token is word 1's),
    # word 1 is '▁' + 11 and moves; word 2 is 10.
    ids, word_ids = [0, 9, 9, 11, 10, 2], [None, 0, 1, 1, 2, None]
    heads = alignment.word_heads(word_ids, 3)
    assert alignment.past_bare_space(ids, word_ids, heads, 9) == [1, 3, 4]
    # The tokenizer moves heads before it appends </s>: a last word that is only a bare '▁' has
    # nothing after it and keeps its '▁' (reading past the end would raise).
    assert alignment.past_bare_space([0, 10, 9], [None, 0, 1], [1, 2], 9) == [1, 2]


def test_a_last_word_that_normalises_to_a_space_keeps_its_bare_space(tokenizer):
    # A left-to-right mark alone normalises to a space: one bare '▁', the last piece before </s>.
    enc = tokenizer.encode_words_batch([["Berlin", "\u200e"]], max_length=None, unspaced="runs")[0]
    assert tokenizer.convert_ids_to_tokens(enc.input_ids) == ["<s>", "▁Berlin", "▁", "</s>"]
    assert enc.word_heads == [1, 2] and enc.word_glued == [False, False]


def test_a_glued_piece_after_another_words_trailing_bare_space_is_glued():
    from xlmr import alignment

    # Word 0 ends in a lone '▁' (a left-to-right mark normalises to a space); word 1's piece 12
    # has no '▁' of its own: it continues the text, so it is glued. Its own word's '▁' would not be.
    ids, word_ids = [0, 10, 9, 12, 2], [None, 0, 0, 1, None]
    assert alignment.glued_heads(ids, word_ids, [1, 3], 9, continues=lambda i: i == 12) == [False, True]
    ids, word_ids = [0, 10, 9, 12, 2], [None, 0, 1, 1, None]
    assert alignment.glued_heads(ids, word_ids, [1, 3], 9, continues=lambda i: i == 12) == [False, False]


def test_head_glued_offsets_and_labelled_tokens_by_hand():
    from xlmr import alignment

    # <s> [w0 w1] [w2] </s>: word 1 sits inside word 0's piece; word 3 was cut off.
    word_ids, word_heads = [-1, 0, 2, -1], [1, 1, 2, -1]
    assert alignment.head_glued(word_ids, word_heads, [True, False, True, False]) == [True, True]
    assert [alignment.head_offset(word_ids, word_heads, w) for w in range(4)] == [0, 0, 0, 0]
    # A word past its bare '▁' has offset 1; the word after it starts at its head, 0.
    assert [alignment.head_offset([None, 0, 0, 1, None], [2, 3], w) for w in range(2)] == [1, 0]
    assert alignment.labelled_tokens([-100, 3, -100, 0, -100], -100) == [1, 3]


def test_the_truncation_warning_points_at_the_caller_and_comes_again_from_a_saved_dataset(tokenizer, tmp_path):
    # A dataset read back from disk has cache files; encoding it a second time must still run the
    # tokenizer (no cached result), or the truncation count of the second run would be 0.
    DatasetDict(train=split([RHEIN], [RHEIN_TAGS])).save_to_disk(str(tmp_path / "ds"))
    from datasets import load_from_disk

    saved = load_from_disk(str(tmp_path / "ds"))
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encode_ner(saved, tokenizer, max_length=8)  # the warning must point at this line
        (w,) = [w for w in caught if "were truncated" in str(w.message)]
        assert str(w.message).startswith("1 sentence(s) longer than 8 tokens") and w.filename == __file__
