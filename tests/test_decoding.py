"""Decoding word scores into tags: Viterbi against brute-force enumeration, the IOB2 rules by
hand, and how tags spread over the words of a run of Han/kana pieces."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from xlmr.decoding import TagDecoder, TransitionPrior, allowed_transitions, inside_ids

PANX = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
# A label set of the user's own, in another order, with a type PAN-X lacks and a bare label.
OTHER = ["B-WORKS", "O", "I-WORKS", "B-PERSON", "I-PERSON", "MISC"]


def valid(tags: list[str]) -> bool:
    """IOB2 validity written out independently of the decoder: an I-X only after B-X or I-X."""
    previous = "O"
    for t in tags:
        if t.startswith("I-") and not (previous[:2] in ("B-", "I-") and previous[2:] == t[2:]):
            return False
        previous = t
    return True


def brute_force(scores: torch.Tensor, labels: list[str]) -> float:
    """The best total score over every valid tag sequence, by enumeration."""
    n, C = scores.shape
    best = float("-inf")
    for path in itertools.product(range(C), repeat=n):
        if valid([labels[i] for i in path]):
            best = max(best, float(sum(scores[t, path[t]] for t in range(n))))
    return best


@pytest.mark.parametrize("labels", [PANX, OTHER], ids=["panx", "own-labels"])
def test_viterbi_matches_brute_force(labels):
    g = torch.Generator().manual_seed(0)
    decoder = TagDecoder(labels)
    for trial in range(12):
        # A batch of sentences of different lengths (0 to 4 words) decoded together.
        lengths = torch.randint(0, 5, (5,), generator=g).tolist()
        scores = [torch.randn(n, len(labels), generator=g).log_softmax(-1) * 3 for n in lengths]
        paths = decoder(scores, "viterbi")
        for s, path in zip(scores, paths):
            assert len(path) == len(s)
            assert valid([labels[i] for i in path])
            if len(s):
                got = float(sum(s[t, path[t]] for t in range(len(s))))
                assert got == pytest.approx(brute_force(s, labels), abs=1e-4)


def counted_by_hand(sentences: list[list[int]], n: int) -> tuple[list[float], list[list[float]]]:
    """log P(first tag) and log P(next | previous) with add-0.5 smoothing, counted in plain Python."""
    start = [0.5 + sum(1 for s in sentences if s and s[0] == i) for i in range(n)]
    pairs = [[0.5 + sum(1 for s in sentences for a, b in zip(s, s[1:]) if (a, b) == (i, j)) for j in range(n)]
             for i in range(n)]
    return ([math.log(c / sum(start)) for c in start], [[math.log(c / sum(row)) for c in row] for row in pairs])


def test_transition_prior_counts_by_hand():
    sentences = [[0, 1, 2, 0], [3, 4, 0], [], [0, 0]]
    prior = TransitionPrior.count(sentences, len(PANX))
    start, follow = counted_by_hand(sentences, len(PANX))
    assert prior.start == pytest.approx(start)
    assert [x for row in prior.follow for x in row] == pytest.approx([x for row in follow for x in row])
    assert prior.weight == 0.0


@pytest.mark.parametrize("labels", [PANX, OTHER], ids=["panx", "own-labels"])
def test_viterbi_with_a_transition_prior_matches_brute_force(labels):
    g = torch.Generator().manual_seed(2)
    n = len(labels)
    sentences = [torch.randint(0, n, (torch.randint(1, 6, ()).item(),), generator=g).tolist() for _ in range(30)]
    start, follow = counted_by_hand(sentences, n)
    for weight in (0.3, 1.0):
        decoder = TagDecoder(labels, TransitionPrior.count(sentences, n, weight))
        for trial in range(8):
            lengths = torch.randint(1, 5, (4,), generator=g).tolist()
            scores = [torch.randn(k, n, generator=g).log_softmax(-1) * 3 for k in lengths]
            for s, path in zip(scores, decoder(scores, "viterbi")):
                assert valid([labels[i] for i in path])

                def total(p):  # emissions plus the weighted prior along path p
                    emitted = float(sum(s[t, p[t]] for t in range(len(p))))
                    return emitted + weight * (start[p[0]] + sum(follow[a][b] for a, b in zip(p, p[1:])))

                best = max(total(p) for p in itertools.product(range(n), repeat=len(s))
                           if valid([labels[i] for i in p]))
                assert total(path) == pytest.approx(best, abs=1e-4)
            # "iob2" ignores the prior: the plain constrained path.
            assert decoder(scores, "iob2") == TagDecoder(labels)(scores, "viterbi")


def test_a_checkpoint_fitted_to_open_entities_by_type_decodes_plain_and_says_so_once(tmp_path):
    """Opening an entity by type was removed. A checkpoint whose prior asks for it (config.json
    tag_transitions.open_by_type true) decodes exactly as one without the key, with one warning
    that names the key. The scores are a redirect line, "ALIH Taman Nasional": by type it read
    O B-LOC I-LOC; plainly one LOC runs over all three words."""
    import json
    import warnings

    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification
    from xlmr.weights import load_model, save_model

    def p(**probs):
        row = torch.full((len(PANX),), 1e-4)
        for tag, v in probs.items():
            row[PANX.index(tag.replace("_", "-"))] = v
        return row.log()
    scores = [torch.stack([p(O=0.5, B_ORG=0.3, B_LOC=0.2), p(I_LOC=0.7, B_LOC=0.1, I_ORG=0.2),
                           p(I_LOC=0.8, I_ORG=0.2)])]
    prior = TransitionPrior.count([[0, 5, 6], [0, 0], [1, 2, 0]], len(PANX), 0.4)
    config = XLMRConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, id2label=dict(enumerate(PANX)),
                        tag_transitions={"start": prior.start, "follow": prior.follow, "weight": 0.4})
    save_model(XLMRForTokenClassification(config), tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "config.json").read_text())
    raw["tag_transitions"]["open_by_type"] = True
    (tmp_path / "old" / "config.json").write_text(json.dumps(raw))
    plain = TagDecoder(PANX, prior)(scores, "viterbi")
    assert [PANX[i] for i in plain[0]] == ["B-LOC", "I-LOC", "I-LOC"]
    old = load_model(tmp_path / "old")
    with pytest.warns(UserWarning, match="tag_transitions.open_by_type is true") as caught:
        assert old.decode(scores, "viterbi") == plain
    assert len(caught) == 1 and "fit_prior" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the next batches decode without another warning
        assert old.decode(scores, "viterbi") == plain


def glued_scores(scores: torch.Tensor, glued: list[bool], labels: list[str]) -> torch.Tensor:
    """The emission rule for glued pieces written out by name: I-X scores log(P(B-X) + P(I-X))."""
    out = scores.clone()
    for t, g in enumerate(glued):
        for i, tag in enumerate(labels):
            if g and tag.startswith("I-") and "B-" + tag[2:] in labels:
                b = labels.index("B-" + tag[2:])
                out[t, i] = float(torch.log(scores[t, b].exp() + scores[t, i].exp()))
    return out


@pytest.mark.parametrize("labels", [PANX, OTHER], ids=["panx", "own-labels"])
def test_viterbi_on_glued_pieces_matches_brute_force(labels):
    g = torch.Generator().manual_seed(1)
    decoder = TagDecoder(labels)
    for trial in range(12):
        lengths = torch.randint(1, 5, (4,), generator=g).tolist()
        scores = [torch.randn(n, len(labels), generator=g).log_softmax(-1) * 3 for n in lengths]
        glued = [torch.rand(n, generator=g).lt(0.5).tolist() for n in lengths]
        paths = decoder(scores, "viterbi", glued)
        for s, mask, path in zip(scores, glued, paths):
            assert valid([labels[i] for i in path])
            rescored = glued_scores(s, mask, labels)
            got = float(sum(rescored[t, path[t]] for t in range(len(s))))
            assert got == pytest.approx(brute_force(rescored, labels), abs=1e-4)


def test_a_glued_piece_continues_the_entity_before_it():
    decoder = TagDecoder(PANX)
    # ジョ | ン: the model says B-PER at both pieces (0.9; 0.6 B-PER, 0.3 I-PER at ン), as it was
    # never taught I- on a piece without '▁'. Alone, ン opens a second PER (log .6 > log .3);
    # glued, continuing scores log(.6 + .3) = log .9 > log .6, so one PER spans both.
    p = torch.tensor([[0.04, 0.9, 0.01, 0.01, 0.01, 0.02, 0.01],
                      [0.04, 0.6, 0.3, 0.01, 0.01, 0.02, 0.02]])
    assert decoder([p.log()], "viterbi") == [[1, 1]]
    assert decoder([p.log()], "viterbi", [[False, True]]) == [[1, 2]]
    assert decoder([p.log()], "argmax", [[False, True]]) == [[1, 1]]  # the book's decoding ignores it
    # After O, a glued piece can only open an entity, with B-PER's own probability.
    q = torch.tensor([[0.9, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01], [0.5, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0]])
    assert decoder([q.clamp_min(1e-9).log()], "viterbi", [[False, True]]) == [[0, 0]]
    with pytest.raises(ValueError, match="glued"):
        decoder([p.log()], "viterbi", [[True]])


def test_a_model_trained_on_glued_pieces_decodes_them_as_it_learnt():
    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification

    config = XLMRConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, id2label=dict(enumerate(PANX)))
    model = XLMRForTokenClassification(config)
    p = torch.tensor([[0.04, 0.9, 0.01, 0.01, 0.01, 0.02, 0.01],
                      [0.04, 0.6, 0.3, 0.01, 0.01, 0.02, 0.02]])
    assert model.decode([p.log()], "viterbi", [[False, True]]) == [[1, 2]]  # B-PER I-PER: one person
    model.config.glued_pieces_labelled = True  # its B-PER at the glued piece was learnt: two people
    assert model.decode([p.log()], "viterbi", [[False, True]]) == [[1, 1]]


def test_viterbi_keeps_a_valid_argmax_and_argmax_is_per_word():
    decoder = TagDecoder(PANX)
    # B-PER I-PER O B-LOC: already valid, so Viterbi changes nothing.
    scores = torch.full((4, 7), -5.0)
    for t, tag in enumerate([1, 2, 0, 5]):
        scores[t, tag] = -0.1
    assert decoder([scores], "viterbi") == [[1, 2, 0, 5]]
    assert decoder([scores], "argmax") == [[1, 2, 0, 5]]


def test_viterbi_repairs_an_inside_tag_after_o():
    decoder = TagDecoder(PANX)
    # Word 0: O (0.6) or B-LOC (0.3); word 1: I-LOC (0.9). Argmax says O I-LOC (invalid);
    # by hand: O B-LOC scores log .6 + log(B-LOC at word 1) = log .6 + log .05 = -3.51,
    # B-LOC I-LOC scores log .3 + log .9 = -1.31: the entity spans both words.
    p = torch.tensor([[0.6, 0.02, 0.02, 0.02, 0.02, 0.3, 0.02],
                      [0.01, 0.01, 0.01, 0.01, 0.01, 0.05, 0.9]])
    assert decoder([p.log()], "argmax") == [[0, 6]]
    assert decoder([p.log()], "viterbi") == [[5, 6]]


def test_allowed_transitions_by_hand():
    start, follows = allowed_transitions(PANX)
    assert start.tolist() == [True, True, False, True, False, True, False]
    i = {t: k for k, t in enumerate(PANX)}
    assert follows[i["B-PER"], i["I-PER"]] and follows[i["I-PER"], i["I-PER"]]
    assert not follows[i["O"], i["I-PER"]] and not follows[i["B-PER"], i["I-LOC"]]
    assert not follows[i["I-ORG"], i["I-LOC"]]
    assert follows[i["I-ORG"], i["B-LOC"]] and follows[i["B-LOC"], i["O"]] and follows[i["O"], i["B-ORG"]]
    # A bare label acts as O: nothing inside may follow it.
    start, follows = allowed_transitions(OTHER)
    j = {t: k for k, t in enumerate(OTHER)}
    assert not follows[j["MISC"], j["I-WORKS"]] and follows[j["B-WORKS"], j["I-WORKS"]]


def test_inside_ids():
    assert inside_ids(PANX) == [0, 2, 2, 4, 4, 6, 6]
    assert inside_ids(OTHER) == [2, 1, 2, 4, 4, 5]


def test_unknown_decoding_is_refused():
    with pytest.raises(ValueError, match="unknown decoding"):
        TagDecoder(PANX)([torch.zeros(1, 7)], "beam")


def test_head_loss_matches_hand_computed_cross_entropy():
    from xlmr.model import cross_entropy as loss

    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # (1, 3, 2)
    labels = torch.tensor([[0, 1, -100]])
    # -log softmax: token 0: log(1 + e^-2); token 1: log(1 + e^-1); token 2 ignored.
    expected = [torch.log1p(torch.exp(torch.tensor(-2.0))), torch.log1p(torch.exp(torch.tensor(-1.0)))]
    assert float(loss(logits, labels, "sum")) == pytest.approx(float(expected[0] + expected[1]))
    assert float(loss(logits, labels)) == pytest.approx(float(expected[0] + expected[1]) / 2)
    assert loss(logits, labels, "none")[0, 2] == 0
