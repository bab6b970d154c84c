"""The head's loss with a CRF, by hand: "sum" is the negative log-likelihood of every sentence
(enumerating every tag sequence over its labelled tokens), "mean" divides it by the labelled
tokens, and a batch with one or no labelled token is counted right. Written for the mutants the
older tests let through (docs/testing.md)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.tiny import TAGS
from xlmr.config import XLMRConfig
from xlmr.crf import LinearChainCRF, labelled_positions
from xlmr.model import XLMRForTokenClassification


def crf_model() -> XLMRForTokenClassification:
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=20, hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=8, head="crf")
    model = XLMRForTokenClassification(config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.crf.start.copy_(torch.randn(len(TAGS), generator=g))
        model.crf.transitions.copy_(torch.randn(len(TAGS), len(TAGS), generator=g))
    return model


def nll_by_enumeration(emissions: list[list[float]], tags: list[int], start, transitions) -> float:
    """log Z - score(gold) over one sentence's labelled tokens, every tag sequence written out."""
    def score(path):
        return (start[path[0]] + sum(emissions[t][y] for t, y in enumerate(path))
                + sum(transitions[a][b] for a, b in zip(path, path[1:])))
    if not tags:
        return 0.0
    log_z = math.log(sum(math.exp(score(p)) for p in itertools.product(range(len(start)), repeat=len(tags))))
    return log_z - score(tags)


def expected_nll(model, logits, labels) -> list[float]:
    start, transitions = model.crf.start.tolist(), model.crf.transitions.tolist()
    out = []
    for b in range(labels.shape[0]):
        positions = [t for t in range(labels.shape[1]) if int(labels[b, t]) != -100]
        out.append(nll_by_enumeration([logits[b, t].tolist() for t in positions],
                                      [int(labels[b, t]) for t in positions], start, transitions))
    return out


def test_crf_loss_sum_and_mean_by_enumeration():
    model = crf_model()
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, len(TAGS), generator=g) * 2  # (B, T, C)
    # Labelled tokens scattered among -100 (later pieces, <s>, </s>, padding): 3, 1 and 2 of them.
    labels = torch.tensor([[-100, 1, -100, 2, 0, -100],
                           [-100, -100, 5, -100, -100, -100],
                           [-100, 3, 4, -100, -100, -100]])
    per_sentence = expected_nll(model, logits, labels)
    with torch.no_grad():
        total = float(model.loss(logits, labels, "sum"))
        mean = float(model.loss(logits, labels, "mean"))
    assert total == pytest.approx(sum(per_sentence), abs=1e-4)
    assert mean == pytest.approx(sum(per_sentence) / 6, abs=1e-4)  # 6 labelled tokens in all


def test_crf_loss_of_one_labelled_token_and_of_none():
    model = crf_model()
    logits = torch.randn(1, 4, len(TAGS), generator=torch.Generator().manual_seed(5))
    one = torch.tensor([[-100, 3, -100, -100]])
    (expected,) = expected_nll(model, logits, one)
    with torch.no_grad():
        # One labelled token: the mean is the sum (divided by 1), a softmax over start + emission.
        assert float(model.loss(logits, one, "mean")) == pytest.approx(expected, abs=1e-5)
        assert float(model.loss(logits, one, "sum")) == pytest.approx(expected, abs=1e-5)
        # No labelled token (a batch of sentences truncated to nothing): 0, not 0/0.
        none = torch.full((1, 4), -100)
        assert float(model.loss(logits, none, "mean")) == 0.0
        assert float(model.loss(logits, none, "sum")) == 0.0
        # A batch of no sentences at all (B = 0): an empty per-sentence NLL and a loss of 0.
        empty_logits, empty_labels = torch.zeros(0, 4, len(TAGS)), torch.zeros(0, 4, dtype=torch.long)
        assert model.crf.nll(*labelled_positions(empty_logits, empty_labels)).shape == (0,)
        assert float(model.loss(empty_logits, empty_labels, "sum")) == 0.0


def test_crf_nll_of_a_batch_whose_first_sentence_is_shorter():
    """A sentence that ends early keeps its forward scores while the longer one goes on; the
    mask decides per sentence (lengths 1 and 3, then 3 and 1)."""
    crf = LinearChainCRF(3)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        crf.start.copy_(torch.randn(3, generator=g))
        crf.transitions.copy_(torch.randn(3, 3, generator=g))
    emissions = torch.randn(2, 3, 3, generator=g)
    tags = torch.tensor([[2, 0, 0], [1, 2, 0]])
    for lengths in ([1, 3], [3, 1]):
        mask = torch.arange(3)[None, :] < torch.tensor(lengths)[:, None]
        got = crf.nll(emissions, tags, mask).tolist()
        for b, n in enumerate(lengths):
            expected = nll_by_enumeration(emissions[b, :n].tolist(), tags[b, :n].tolist(), crf.start.tolist(),
                                          crf.transitions.tolist())
            assert got[b] == pytest.approx(expected, abs=1e-5), (lengths, b)


def test_labelled_positions_keep_the_word_order_of_long_sentences():
    """Sentences of 64 tokens, about a third labelled: each sentence's labelled tokens come first
    in their order (gathered here by a plain loop), then zeros; N is the most labels any sentence
    has. (An unstable sort keeps the order on short rows only.)"""
    from xlmr.crf import labelled_positions

    g = torch.Generator().manual_seed(8)
    B, T, C = 3, 64, 7
    logits = torch.randn(B, T, C, generator=g)
    labels = torch.randint(0, C, (B, T), generator=g)
    labels[torch.rand(B, T, generator=g) < 0.66] = -100
    emissions, tags, mask = labelled_positions(logits, labels)
    counts = [int((labels[b] != -100).sum()) for b in range(B)]
    assert emissions.shape == (B, max(counts), C) and mask.sum(1).tolist() == counts
    for b in range(B):
        positions = [t for t in range(T) if int(labels[b, t]) != -100]
        assert torch.equal(emissions[b, :counts[b]], logits[b, positions])
        assert tags[b].tolist() == [int(labels[b, t]) for t in positions] + [0] * (max(counts) - counts[b])
    # One label per sentence: N is 1.
    one = torch.full((2, 5), -100)
    one[0, 1], one[1, 3] = 2, 4
    emissions, tags, mask = labelled_positions(logits[:2, :5], one)
    assert mask.tolist() == [[True], [True]] and tags.tolist() == [[2], [4]]
    assert torch.equal(emissions[:, 0], torch.stack([logits[0, 1], logits[1, 3]]))


def iob2_valid(tags: list[str]) -> bool:
    previous = "O"
    for t in tags:
        if t.startswith("I-") and previous[2:] != t[2:]:
            return False
        previous = t
    return True


def test_a_crf_model_decodes_with_its_learnt_scores_by_enumeration():
    """The CRF's start and transition scores are Viterbi's prior at weight 1: the decoded path is
    the IOB2-valid one with the highest emissions + start + transitions, found here by trying
    every path. The transitions are set so that they, not the emissions, decide."""
    model = crf_model()
    with torch.no_grad():
        model.crf.transitions.mul_(3)
    prior = model.crf.prior()
    assert prior.weight == 1.0
    assert prior.start == pytest.approx(model.crf.start.tolist())
    assert [x for row in prior.follow for x in row] == pytest.approx(model.crf.transitions.flatten().tolist())
    start, transitions = model.crf.start.tolist(), model.crf.transitions.tolist()
    g = torch.Generator().manual_seed(9)
    for _ in range(4):
        scores = torch.randn(3, len(TAGS), generator=g).log_softmax(-1)

        def total(path):
            return (start[path[0]] + sum(float(scores[t, y]) for t, y in enumerate(path))
                    + sum(transitions[a][b] for a, b in zip(path, path[1:])))
        paths = [p for p in itertools.product(range(len(TAGS)), repeat=3) if iob2_valid([TAGS[i] for i in p])]
        best = max(paths, key=total)
        assert model.decode([scores], "viterbi") == [list(best)]
        plain = max(paths, key=lambda p: sum(float(scores[t, y]) for t, y in enumerate(p)))
        assert model.decode([scores], "iob2") == [list(plain)]  # the constraints alone
