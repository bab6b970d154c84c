"""Tagging raw text: span merging, aggregation, windowing and character offsets.

The pipeline tests use a real tiny model whose weights make its scores depend only on the token
id (tests.tiny.lookup_model), so every expected tag can be worked out by hand from the sub-words."""
from __future__ import annotations

import pytest
import torch

from loaders.panx import TAGS
from tests.tiny import lookup_model
from xlmr.entities import entities_from_tags
from xlmr.tagger import Tagger, aggregate, plan_windows, window_owner
from xlmr.words import split_words


# -- span merging ----------------------------------------------------------------------------

def spans_of(text):
    return split_words(text)


def ents(text, tags, scores=None):
    words = spans_of(text)
    assert len(words) == len(tags), (words, tags)
    return [(e.type, e.text, e.start, e.end) for e in entities_from_tags(text, words, tags, scores or [1.0] * len(tags))]


def test_b_then_i_is_one_entity():
    text = "Jeff Dean works at Google"
    assert ents(text, ["B-PER", "I-PER", "O", "O", "B-ORG"]) == [("PER", "Jeff Dean", 0, 9), ("ORG", "Google", 19, 25)]


def test_i_without_b_opens_an_entity():
    assert ents("in New York", ["O", "I-LOC", "I-LOC"]) == [("LOC", "New York", 3, 11)]


def test_adjacent_entities_of_one_type_stay_apart():
    assert ents("Paris Berlin", ["B-LOC", "B-LOC"]) == [("LOC", "Paris", 0, 5), ("LOC", "Berlin", 6, 12)]


def test_i_of_another_type_closes_and_opens():
    assert ents("Bank of Italy", ["B-ORG", "I-ORG", "I-LOC"]) == [("ORG", "Bank of", 0, 7), ("LOC", "Italy", 8, 13)]


def test_entity_score_is_the_mean_of_its_words():
    text = "Jeff Dean"
    (e,) = entities_from_tags(text, spans_of(text), ["B-PER", "I-PER"], [0.9, 0.5])
    assert e.score == pytest.approx(0.7)


def test_offsets_with_extra_spaces_and_accents():
    text = "  Müller   traf\tJosé  Gonçalves in   São Paulo ,  "
    words = spans_of(text)
    assert [text[a:b] for a, b in words] == ["Müller", "traf", "José", "Gonçalves", "in", "São", "Paulo", ","]
    tags = ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert [(e.text, text[e.start:e.end]) for e in entities_from_tags(text, words, tags, [1.0] * 8)] == [
        ("Müller", "Müller"), ("José  Gonçalves", "José  Gonçalves"), ("São Paulo", "São Paulo")]


# -- aggregation -----------------------------------------------------------------------------

def test_aggregation_strategies():
    # Three sub-words of one word over 3 labels, worked by hand:
    probs = torch.tensor([[0.5, 0.4, 0.1],   # first: label 0 (0.5)
                          [0.1, 0.8, 0.1],   # max: this row is the surest (0.9 below is surer)
                          [0.0, 0.1, 0.9]])  # -> max picks label 2 with 0.9
    torch.testing.assert_close(aggregate(probs, "first"), torch.tensor([0.5, 0.4, 0.1]))
    # average: (0.2, 1.3/3, 1.1/3) -> label 1 with 0.4333
    torch.testing.assert_close(aggregate(probs, "average"), torch.tensor([0.2, 1.3 / 3, 1.1 / 3]))
    torch.testing.assert_close(aggregate(probs, "max"), torch.tensor([0.0, 0.1, 0.9]))
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(probs, "mean")


# -- windowing -------------------------------------------------------------------------------

def test_plan_windows_by_hand():
    # Words of 2, 3, 1, 4, 2 tokens; 6 tokens per window, overlap of up to 3 tokens.
    counts = [2, 3, 1, 4, 2]
    # [0,3) holds 2+3+1 = 6 tokens. Stepping back from its end: word 2 (1 token) fits the overlap
    # of 3, word 1 (3 more) does not, so the next window starts at word 2.
    # [2,4) holds 1+4 = 5 tokens (word 4 would make 7). Word 3 alone (4) exceeds the overlap, so
    # the next window starts right after it, at word 4: [4,5).
    assert plan_windows(counts, 6, 3) == [(0, 3), (2, 4), (4, 5)]
    assert plan_windows(counts, 100, 10) == [(0, 5)]
    assert plan_windows([], 6, 3) == []
    # A word longer than the budget gets a window of its own.
    assert plan_windows([1, 9, 1], 4, 1) == [(0, 1), (1, 2), (2, 3)]


def test_window_owner_prefers_the_middle():
    # Word 2 is at the edge of window 0 and inside window 1 by one word: window 1 owns it.
    assert window_owner([(0, 3), (1, 5)], 5) == [0, 0, 1, 1, 1]


# -- the whole pipeline with a model that scores tokens by id ---------------------------------

def longest_input(model) -> list[int]:
    """[the longest input length the model has been given so far], kept up to date by a hook."""
    longest = [0]
    model.register_forward_pre_hook(lambda module, args: longest.__setitem__(0, max(longest[0], args[0].shape[1])))
    return longest


def ids_of(tokenizer, word):
    return tokenizer.encode_words([word], max_length=None).input_ids[1:-1]


def test_tags_and_offsets_end_to_end(tokenizer):
    text = "Jeff  Dean ist ein Informatiker bei Google in Kalifornien ."
    tag_of = {}
    for word, (first, rest) in {"Jeff": (1, 2), "Dean": (2, 2), "Google": (3, 4), "Kalifornien": (5, 6)}.items():
        pieces = ids_of(tokenizer, word)
        tag_of[pieces[0]] = first
        for p in pieces[1:]:
            tag_of[p] = rest
    tagged = Tagger(lookup_model(tag_of), tokenizer)(text)
    assert [(e.type, e.text) for e in tagged.entities] == [("PER", "Jeff  Dean"), ("ORG", "Google"),
                                                           ("LOC", "Kalifornien")]
    for e in tagged.entities:
        assert text[e.start:e.end] == e.text
    assert len(tagged.tokens) == sum(len(ids_of(tokenizer, text[a:b])) for a, b in tagged.words)
    assert tagged.word_tags[-1] == "O"


def test_aggregation_in_the_pipeline(tokenizer):
    # "Donaudampfschifffahrt" is several sub-words; give the first O, the others B-LOC (surely).
    pieces = ids_of(tokenizer, "Donaudampfschifffahrt")
    assert len(pieces) >= 3
    model = lookup_model({p: 5 for p in pieces[1:]})
    tagger = Tagger(model, tokenizer)
    assert tagger("Donaudampfschifffahrt", "first").word_tags == ["O"]
    assert tagger("Donaudampfschifffahrt", "max").word_tags == ["B-LOC"]
    assert tagger("Donaudampfschifffahrt", "average").word_tags == ["B-LOC"]  # most sub-words say B-LOC


def test_long_text_in_windows_tags_every_word(tokenizer):
    words = [f"Wort{i % 97}" if i % 10 else "Berlin" for i in range(2000)]
    text = " ".join(words)
    berlin = ids_of(tokenizer, "Berlin")
    model = lookup_model({berlin[0]: 5}, max_positions=66)  # windows of 64 tokens
    longest = longest_input(model)
    tagged_many = Tagger(model, tokenizer, batch_size=32)([text, "Berlin"])
    tagged = tagged_many[0]
    assert 0 < longest[0] <= 64
    assert len(tagged.word_tags) == len(tagged.words) == 2000
    assert [text[a:b] for a, b in tagged.words] == words
    expected = ["B-LOC" if w == "Berlin" else "O" for w in words]
    assert tagged.word_tags == expected
    assert [e.text for e in tagged.entities] == ["Berlin"] * 200
    # Each sub-word appears once, in text order.
    assert tagged.token_words == sorted(tagged.token_words)
    assert tagged_many[1].word_tags == ["B-LOC"]


def edge_shy(model, margin: int):
    """The model made to tag a token only where it has context: at least `margin` tokens from
    both edges of its window; near an edge it says O (a hook on its output). So a word tagged
    from the wrong window (where it sits at the edge) comes out O."""
    def hook(module, args, output):
        (input_ids, attention_mask), (logits, loss) = args, output
        lengths = attention_mask.sum(1)  # (B,) with <s> and </s>
        position = torch.arange(input_ids.shape[1])[None, :]  # (1, T)
        near_edge = (position - 1 < margin) | (lengths[:, None] - 2 - position < margin)  # (B, T)
        logits = logits.clone()
        logits[near_edge] = torch.nn.functional.one_hot(torch.tensor(0), len(TAGS)).float() * 5
        return logits, loss

    model.register_forward_hook(hook)
    return model


def test_each_word_is_tagged_from_the_window_where_it_has_most_context(tokenizer):
    words = [f"Wort{i % 97}" if i % 10 else "Berlin" for i in range(600)]
    text = " ".join(words)
    berlin = ids_of(tokenizer, "Berlin")
    model = edge_shy(lookup_model({berlin[0]: 5}, max_positions=66), margin=4)  # windows of 64 tokens, ~15 shared
    tagged = Tagger(model, tokenizer)(text)
    assert len(tagged.word_tags) == 600
    # Word 0 is at the start of the only window that holds it: the model says O there.
    assert tagged.word_tags[0] == "O"
    # Every other Berlin sits well inside some window, and that window decides its tag.
    inner = [tag for i, (w, tag) in enumerate(zip(words, tagged.word_tags)) if w == "Berlin" and 5 < i < 595]
    assert len(inner) == 59 and set(inner) == {"B-LOC"}


def test_empty_and_blank_text(tokenizer):
    tagger = Tagger(lookup_model({}), tokenizer)
    for text in ("", "   \n\t "):
        r = tagger(text)
        assert r.words == [] and r.entities == [] and r.tokens == []


def test_bad_window_settings(tokenizer):
    with pytest.raises(ValueError, match="stride"):
        Tagger(lookup_model({}), tokenizer, max_length=10, stride=8)
