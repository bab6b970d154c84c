"""Entities and decoding, worked by hand where the older tests let mutants through
(docs/testing.md): an entity's score is the mean of its words' scores, tags of other schemes or
without a type read as O, and the decoder's edge cases."""
from __future__ import annotations

import pytest

from xlmr.entities import entities_from_tags, entity_spans

PANX = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_an_entity_scores_the_mean_of_its_words_by_hand():
    text = "Angela Dorothea Merkel besucht Paris ."
    words = [(0, 6), (7, 15), (16, 22), (23, 30), (31, 36), (37, 38)]
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "O"]
    scores = [0.9, 0.6, 0.3, 0.1, 0.7, 0.2]
    per, loc = entities_from_tags(text, words, tags, scores)
    assert (per.type, per.text, per.start, per.end, per.words) == ("PER", "Angela Dorothea Merkel", 0, 22, (0, 2))
    assert per.score == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    assert (loc.type, loc.text, loc.words) == ("LOC", "Paris", (4, 4))
    assert loc.score == pytest.approx(0.7)


def test_tags_without_a_b_or_i_prefix_and_a_type_read_as_o():
    # BIOES's S-/E-, a bare label and a prefix without a type open nothing, as decoding reads them
    # (xlmr/decoding.py); each closes the entity before it.
    assert entity_spans(["S-PER", "E-LOC", "MISC", "B-", "I-"]) == []
    assert entity_spans(["B-PER", "E-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 2, 2)]
    assert entity_spans(["B-ORG", "MISC", "I-ORG"]) == [("ORG", 0, 0), ("ORG", 2, 2)]
