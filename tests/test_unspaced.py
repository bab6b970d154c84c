"""Runs of Han/kana words tokenised as one string: pieces, labels and word heads worked by hand,
and the tagger finding entities that such pieces carry."""
from __future__ import annotations

import pytest

from loaders.align import IGNORE, align_labels
from loaders.panx import TAGS
from xlmr.tagger import Tagger
from xlmr.tokenizer import RUN_PIECE_CHARS

from tests.tiny import lookup_model

O, B_ORG, I_ORG, B_LOC = (TAGS.index(t) for t in ("O", "B-ORG", "I-ORG", "B-LOC"))


def pieces(tokenizer, enc):
    return tokenizer.convert_ids_to_tokens(enc.input_ids)


def test_a_run_is_cut_into_short_pieces(tokenizer):
    words = list("我在北京大学工作")  # "I work at Peking University", one word per character as PAN-X writes it
    enc = tokenizer.encode_words_batch([words], unspaced="runs")[0]
    # SentencePiece's own cut is ▁我 在北京 大学 工作: 在北京 ("in Beijing") would hide where the
    # entity starts. With pieces of at most two characters: ▁ 我在 北京 大学 工作, and the lone
    # '▁' (no character of its own) is left out.
    assert pieces(tokenizer, enc) == ["<s>", "我在", "北京", "大学", "工作", "</s>"]
    assert enc.word_ids == [None, 0, 2, 4, 6, None]  # the word each piece starts in
    # 在 sits inside 我在, so its label is word 0's token; 京 inside 北京, and so on.
    assert enc.word_heads == [1, 1, 2, 2, 3, 3, 4, 4]
    # No piece of the run has a '▁', so each word that carries a piece's label is glued to the
    # text before it; words inside a piece carry none.
    assert enc.word_glued == [True, False, True, False, True, False, True, False]
    # Gold: 北京大学 is an organisation. Each piece carries the tag of the word it starts in.
    gold = [O, O, B_ORG, I_ORG, I_ORG, I_ORG, O, O]
    assert align_labels(enc.word_ids, gold) == [IGNORE, O, B_ORG, I_ORG, O, IGNORE]
    # "words" is each character alone, as Hugging Face's is_split_into_words does.
    alone = tokenizer.encode_words_batch([words], unspaced="words")[0]
    assert alone.input_ids == tokenizer.encode_words(words).input_ids
    assert len(alone.input_ids) > len(enc.input_ids)


def test_runs_stop_at_other_scripts_and_punctuation(tokenizer):
    words = ["Sony", "の", "本", "社", "は", "東", "京", "，", "Tokyo"]
    enc = tokenizer.encode_words_batch([words], unspaced="runs")[0]
    toks = pieces(tokenizer, enc)
    assert toks[1] == "▁Sony" and toks[-2:] == ["▁Tokyo", "</s>"]
    assert "東京" in toks  # the run の本社は東京 holds the piece 東京
    assert enc.word_heads[5] == toks.index("東京") and enc.word_heads[6] == toks.index("東京")
    assert not enc.word_glued[0] and not enc.word_glued[-1]  # ▁Sony and ▁Tokyo start with '▁'
    assert enc.word_glued[5] and not enc.word_glued[6]  # 東京 continues は; 京 sits inside it
    # No piece of the run is longer than RUN_PIECE_CHARS characters; together they spell the run.
    run = [p for p, w in zip(toks, enc.word_ids) if w is not None and 1 <= w <= 6]
    assert "".join(run) == "の本社は東京"
    assert max(len(p) for p in run) <= RUN_PIECE_CHARS


def test_truncation_inside_a_run(tokenizer):
    enc = tokenizer.encode_words_batch([list("我在北京大学工作")], max_length=5, unspaced="runs")[0]
    assert pieces(tokenizer, enc) == ["<s>", "我在", "北京", "大学", "</s>"]
    assert enc.truncated and enc.word_heads == [1, 1, 2, 2, 3, 3, -1, -1]


def ids_of_piece(tokenizer, piece):
    return tokenizer.convert_tokens_to_ids([piece])[0]


@pytest.mark.parametrize("decode", ["viterbi", "argmax"])
def test_tagger_finds_entities_inside_pieces(tokenizer, decode):
    # A model that calls the pieces 北京, 上海 and 東京 B-LOC, and ソ (Sony's first piece) B-ORG.
    tag_of = {ids_of_piece(tokenizer, p): B_LOC for p in ("北京", "上海", "東京")}
    tag_of[ids_of_piece(tokenizer, "ソ")] = B_ORG
    tag_of[ids_of_piece(tokenizer, "ニー")] = I_ORG
    tagger = Tagger(lookup_model(tag_of), tokenizer)
    zh = "我在北京大学工作，住在上海。"
    assert [(e.type, e.text, e.start) for e in tagger(zh, decode=decode).entities] == [
        ("LOC", "北京", 2), ("LOC", "上海", 11)]
    ja = "ソニーの本社は東京にあり、"
    # ソ carries its own label (SentencePiece's lone '▁' before it is left out).
    assert [(e.type, e.text) for e in tagger(ja, decode=decode).entities] == [("ORG", "ソニー"), ("LOC", "東京")]
    # Each character alone (the book's way) gives the model no piece 北京 to see.
    alone = Tagger(lookup_model(tag_of), tokenizer, unspaced="words")
    assert alone(zh, decode=decode).entities == []
