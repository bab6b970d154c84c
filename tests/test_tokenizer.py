"""Our SentencePiece tokenizer against Hugging Face's fast tokenizer of XLM-R."""
from __future__ import annotations

import random

import pytest

from loaders.panx import read_panx

FILES = [f"{split}-{lang}.tsv" for split in ("train", "dev", "test") for lang in ("de", "fr", "it", "en")]


def test_known_ids(tokenizer):
    ids = tokenizer.encode("Jack Sparrow loves New York!")
    assert ids == [0, 21763, 37456, 15555, 5161, 7, 2356, 5753, 38, 2]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "▁Jack", "▁Spar", "row", "▁love", "s", "▁New", "▁York", "!", "</s>"]
    assert tokenizer.decode(ids) == "Jack Sparrow loves New York!"
    assert tokenizer.encode("Hello world!") == [0, 35378, 8999, 38, 2]


def test_special_ids_and_unknowns(tokenizer):
    assert tokenizer.vocab_size == 250002 and tokenizer.mask_id == 250001
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 250001]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert tokenizer.encode("") == [0, 2]
    # SentencePiece's unknown (its id 0) must become <unk> = 3, never 1 (<pad>).
    ids = tokenizer.encode("\U0001d11e\U0001d11e")
    assert 1 not in ids


def test_word_ids_and_truncation_keep_eos(tokenizer):
    enc = tokenizer.encode_words(["Hamburg-Altona", "liegt", "."])
    assert enc.word_ids[0] is None and enc.word_ids[-1] is None
    assert enc.word_ids[1:-1] == [0, 0, 0, 0, 1, 2, 2]  # ▁Hamburg - Alt ona | ▁liegt | ▁ .
    short = tokenizer.encode_words(["Hamburg-Altona", "liegt", "."], max_length=5)
    assert short.truncated and short.input_ids == enc.input_ids[:4] + [2] and short.word_ids[-1] is None


def sentences(panx_dir, name):
    return read_panx(panx_dir / name, name.split("-")[1].split(".")[0])["tokens"]


def compare(tokenizer, hf_fast_tokenizer, batch):
    ours = tokenizer.encode_words_batch(batch, max_length=None)
    ref = hf_fast_tokenizer.encode_batch(batch, is_pretokenized=True)
    return [(words, o, r) for words, o, r in zip(batch, ours, ref) if o.input_ids != r.ids or o.word_ids != r.word_ids]


def test_parity_on_a_random_sample(panx_dir, tokenizer, hf_fast_tokenizer):
    rng = random.Random(0)
    sample = []
    for name in FILES:
        sample += rng.sample(sentences(panx_dir, name), 500)
    mismatches = compare(tokenizer, hf_fast_tokenizer, sample)
    assert not mismatches, mismatches[:3]


def test_trailing_space_after_normalisation(tokenizer, hf_fast_tokenizer):
    """A left-to-right mark normalises to a space: the fast tokenizer then emits a lone '▁'."""
    words = ["Berlin-Grunewald\u200e", "trägt", "a\u3000b", "x  y"]
    assert not compare(tokenizer, hf_fast_tokenizer, [words])


@pytest.mark.slow
def test_parity_on_every_panx_sentence(panx_dir, tokenizer, hf_fast_tokenizer):
    """All 160,000 sentences. One known tie remains: '===' + '=' and '=' + '===' score the same
    under the Unigram model and the two Viterbi implementations break the tie differently."""
    total, mismatches = 0, []
    for name in FILES:
        batch = sentences(panx_dir, name)
        total += len(batch)
        mismatches += compare(tokenizer, hf_fast_tokenizer, batch)
    print(f"{total - len(mismatches)} of {total} sentences match")
    assert total == 160000
    assert all("===" in "".join(words) for words, _, _ in mismatches), mismatches[:3]
    assert len(mismatches) <= 1
