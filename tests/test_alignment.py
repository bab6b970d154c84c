"""The one alignment module (xlmr/alignment.py), by hand, and the one entity reader against seqeval."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from xlmr import alignment
from xlmr.decoding import inside_ids
from xlmr.entities import Entity, entity_dicts, entity_spans

PANX = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_heads_past_a_bare_space_by_hand(tokenizer):
    # <s> ▁Der ▁Flu s s ▁( ▁Rhein ▁) ▁ . </s>: "." is a bare '▁' and '.'
    enc = tokenizer.encode_words_batch([["Der", "Fluss", "(", "Rhein", ")", "."]], unspaced="runs")[0]
    assert alignment.word_heads(enc.word_ids, 6) == [1, 2, 5, 6, 7, 8]  # first pieces
    assert enc.word_heads == [1, 2, 5, 6, 7, 9]  # '.' moved off its bare '▁'
    assert [alignment.head_offset(enc.word_ids, enc.word_heads, w) for w in range(6)] == [0, 0, 0, 0, 0, 1]
    assert alignment.head_positions(enc.word_ids, enc.word_heads) == [1, 2, 5, 6, 7, 9]


def test_spread_over_a_run_by_hand():
    # Tokens: <s> ▁ 我在 北京 大学 工作 </s>; words 我 在 北 京 大 学 工 作.
    word_ids = [-1, 0, 0, 2, 4, 6, -1]
    word_heads = [1, 1, 3, 3, 4, 4, 5, 5]
    assert alignment.head_positions(word_ids, word_heads) == [1, 3, 4, 5]
    assert alignment.head_owners(word_ids, word_heads) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [alignment.owns_head(word_ids, word_heads, w) for w in range(8)] == [True, False] * 4
    assert alignment.piece_groups(word_ids, word_heads) == [(0, 2), (2, 4), (4, 6), (6, 8)]  # one per piece
    # Decoded at the heads: O, B-ORG, I-ORG, O.
    tags = alignment.spread_to_words([0, 3, 4, 0], word_ids, word_heads, inside_ids(PANX), 0)
    assert [PANX[t] for t in tags] == ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]
    # Words cut off by truncation (-1) are O and own nothing.
    cut = [-1, 0, 0, 2, -1], [1, 1, 3, 3, -1, -1]
    assert alignment.spread_to_words([0, 3], *cut, inside_ids(PANX), 0) == [0, 0, 3, 4, 0, 0]
    assert alignment.head_owners(*cut) == [0, 0, 1, 1, -1, -1]


def test_truncation_and_glued_heads_by_hand():
    # ids: <s>=0, a bare '▁'=9, pieces 10..13; word 1 starts with a bare '▁' and continues with 11.
    ids, word_ids = [0, 10, 9, 11, 12, 2], [None, 0, 1, 1, 2, None]
    heads = alignment.past_bare_space(ids, word_ids, alignment.word_heads(word_ids, 3), 9)
    assert heads == [1, 3, 4]
    glued = alignment.glued_heads(ids, word_ids, heads, 9, continues=lambda i: i in (11, 12))
    assert glued == [False, False, True]  # 11 follows its own word's '▁'; 12 continues word 1's text
    assert alignment.truncate_heads(heads, 4) == [1, 3, -1]


TAG = st.sampled_from(PANX)


@settings(max_examples=300, deadline=None)
@given(st.lists(TAG, max_size=12))
def test_entity_reader_is_seqevals(tags):
    # seqeval's default mode is what the project's F1 is scored in; the tagger must read the same entities.
    assert [tuple(e) for e in entity_spans(tags)] == [tuple(e) for e in get_entities(tags)]


def test_entity_dicts_are_the_pipeline_shape():
    e = Entity("LOC", "Rhein", 4, 9, 0.98765432, (1, 1))
    assert entity_dicts([e]) == [{"entity_group": "LOC", "score": 0.98765432, "word": "Rhein", "start": 4, "end": 9}]
    assert entity_dicts([e], digits=6)[0]["score"] == 0.987654
