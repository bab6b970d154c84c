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


def test_the_prior_of_a_config_json_by_hand():
    import torch

    from xlmr.decoding import TagDecoder, TransitionPrior

    assert TransitionPrior.from_dict(None) is None and TransitionPrior.from_dict({}) is None
    d = {"start": [-0.1] * 7, "follow": [[-0.2] * 7 for _ in range(7)], "weight": "0.4"}
    prior = TransitionPrior.from_dict(d)
    assert (prior.start, prior.follow, prior.weight) == (d["start"], d["follow"], 0.4)
    # A prior built without a weight adds nothing: decoding is the constraints alone. The scores
    # favour O after B-PER (0.5 vs 0.45 for I-PER), the prior strongly the other way.
    follow = [[-10.0] * 7 for _ in range(7)]
    follow[1][2] = 0.0
    unweighted = TransitionPrior([0.0] * 7, follow)
    scores = [torch.tensor([[0.01, 0.9, 0.01, 0.02, 0.02, 0.02, 0.02],
                            [0.5, 0.01, 0.45, 0.01, 0.01, 0.01, 0.01]]).log()]
    assert TagDecoder(PANX, unweighted)(scores, "viterbi") == [[1, 0]]
    weighted = TransitionPrior([0.0] * 7, follow, 1.0)
    assert TagDecoder(PANX, weighted)(scores, "viterbi") == [[1, 2]]


def test_glued_decoding_leaves_the_callers_scores_alone_and_a_prior_of_other_tags_is_refused():
    import torch

    from xlmr.decoding import TagDecoder, TransitionPrior

    scores = [torch.tensor([[0.04, 0.9, 0.01, 0.01, 0.01, 0.02, 0.01],
                            [0.04, 0.6, 0.3, 0.01, 0.01, 0.02, 0.02]]).log()]
    assert TagDecoder(PANX)(scores, "viterbi", [[False, True]]) == [[1, 2]]
    # The emissions as Viterbi adds them: on the glued word, I-PER scores log(.6 + .3), I-ORG
    # log(.01 + .01), I-LOC log(.02 + .02); the caller's (B, N, C) tensor stays as it was.
    x = scores[0][None].clone()
    before = x.clone()
    got = TagDecoder(PANX).emissions(x, [[False, True]])
    assert torch.equal(x, before)
    assert torch.equal(got[0, 0], before[0, 0])
    expected = before[0, 1].clone()
    expected[2], expected[4], expected[6] = torch.log(torch.tensor([0.9, 0.02, 0.04]))
    torch.testing.assert_close(got[0, 1], expected)
    with pytest.raises(ValueError, match="the transition prior has 3 tags, the labels 7"):
        TagDecoder(PANX, TransitionPrior([0.0] * 3, [[0.0] * 3] * 3, 0.5))


def test_viterbi_on_empty_batches_and_its_default_uses_the_prior():
    import torch

    from xlmr.decoding import TagDecoder, TransitionPrior

    decoder = TagDecoder(PANX)
    assert decoder([], "viterbi") == []
    assert decoder([torch.zeros(0, 7), torch.zeros(0, 7)], "viterbi") == [[], []]
    follow = [[-10.0] * 7 for _ in range(7)]
    follow[1][2] = 0.0
    prior_decoder = TagDecoder(PANX, TransitionPrior([0.0] * 7, follow, 1.0))
    scores = [torch.tensor([[0.01, 0.9, 0.01, 0.02, 0.02, 0.02, 0.02],
                            [0.5, 0.01, 0.45, 0.01, 0.01, 0.01, 0.01]]).log()]
    assert prior_decoder.viterbi(scores) == prior_decoder(scores, "viterbi") == [[1, 2]]
    assert prior_decoder.viterbi(scores, with_prior=False) == [[1, 0]]


def test_a_b_or_i_without_a_type_is_o_for_the_decoder():
    import torch

    from xlmr.decoding import allowed_transitions

    # "I" and "B" without a type are not IOB2 entity tags: like O, either may open a sentence and
    # follow anything, and anything may follow them (I-PER only after B-PER or I-PER).
    start, follows = allowed_transitions(["O", "B", "I", "B-PER", "I-PER"])
    assert start.tolist() == [True, True, True, True, False]
    assert follows[:, 2].tolist() == [True] * 5
    assert follows[:, 4].tolist() == [False, False, False, True, True]
    assert torch.equal(follows[1], follows[0]) and torch.equal(follows[2], follows[0])


def test_the_open_by_type_warning_points_at_the_caller():
    import warnings

    from xlmr.decoding import TransitionPrior

    d = {"start": [0.0], "follow": [[0.0]], "weight": 0.5, "open_by_type": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prior = TransitionPrior.from_dict(d)  # this line is where the warning must point
    assert prior.weight == 0.5
    (w,) = caught
    assert "open_by_type" in str(w.message) and w.filename == __file__
