"""Soft targets (an adaptation's `adapt_targets=soft`): the loss against the teacher's word
distributions, by hand and against the hard loss; the rows put on the heads that carry labels,
through the real tokenizer's alignment (a bare '▁', a Han run); and the collator's row order,
which must be the order in which the loss reads the labelled tokens."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from loaders.align import IGNORE, align_labels, align_soft_labels
from loaders.collate import PaddingCollator
from xlmr.config import XLMRConfig
from xlmr.model import XLMRForTokenClassification, soft_cross_entropy


def test_the_loss_by_hand():
    # One sentence, three tokens, the middle one unlabelled; two labels.
    logits = torch.tensor([[[0.0, math.log(3)], [5.0, -5.0], [math.log(4), 0.0]]])
    labels = torch.tensor([[1, IGNORE, 0]])
    targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # q = softmax: token 0 (1/4, 3/4), token 2 (4/5, 1/5); -sum t log q:
    expected = -(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4)) - math.log(4 / 5)
    assert float(soft_cross_entropy(logits, labels, targets)) == pytest.approx(expected, rel=1e-6)


def test_one_hot_rows_give_the_hard_loss_and_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, requires_grad=True)
    labels = torch.tensor([[2, IGNORE, 0, 3, IGNORE], [IGNORE, 1, 1, IGNORE, IGNORE]])
    one_hot = F.one_hot(labels[labels != IGNORE], 4).float()
    soft = soft_cross_entropy(logits, labels, one_hot)
    hard = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    (g_soft,) = torch.autograd.grad(soft, logits)
    (g_hard,) = torch.autograd.grad(hard, logits)
    assert torch.allclose(g_soft, g_hard, atol=1e-6)


def test_the_gradient_is_the_softmax_minus_the_target():
    logits = torch.tensor([[[0.3, -1.2, 2.0]]], requires_grad=True)
    targets = torch.tensor([[0.2, 0.3, 0.5]])
    (grad,) = torch.autograd.grad(soft_cross_entropy(logits, torch.tensor([[0]]), targets), logits)
    assert torch.allclose(grad[0, 0], logits[0, 0].softmax(-1) - targets[0], atol=1e-6)


@pytest.mark.parametrize("words, unspaced", [
    (["Die", "Ludwig-Maximilians-Universität", "in", "München", "."], "runs"),  # several pieces a word
    (["“", "Paris", "”", "und", "1999"], "runs"),  # words whose first piece is a bare '▁'
    (["我", "在", "北", "京", "大", "学", "工", "作"], "runs"),  # a Han run: a piece may span words
    (["我", "在", "北", "京"], "words"),
])
def test_each_labelled_token_gets_the_distribution_of_the_word_it_labels(tokenizer, words, unspaced):
    """Each word's distribution is a one-hot of a word id of its own (a 'label' per word), so the
    hard labels the alignment puts on the heads tell which word's row each labelled token must get."""
    n = len(words)
    enc = tokenizer.encode_words_batch([words], unspaced=unspaced)[0]
    hard = align_labels(enc.word_ids, list(range(n)), enc.word_heads)  # word w's label is w
    probs = [[float(c == w) for c in range(n)] for w in range(n)]
    rows = align_soft_labels(enc.word_ids, enc.word_heads, probs)
    assert [row.index(1.0) for row in rows] == [label for label in hard if label != IGNORE]


def test_the_collator_stacks_rows_in_the_order_the_loss_reads_them():
    """Two sentences of different lengths; row k of the batch's soft targets belongs to the k-th
    labelled token read row by row, so one-hot rows built sentence by sentence give the hard loss."""
    features = [
        {"input_ids": [0, 10, 11, 12, 2], "labels": [IGNORE, 3, IGNORE, 1, IGNORE]},
        {"input_ids": [0, 13, 2], "labels": [IGNORE, 2, IGNORE]},
        {"input_ids": [0, 2], "labels": [IGNORE, IGNORE]},  # no labelled token at all
    ]
    for f in features:
        f["soft_labels"] = [[float(c == label) for c in range(4)] for label in f["labels"] if label != IGNORE]
    batch = PaddingCollator()(features)
    assert batch["soft_labels"].shape == (3, 4)
    torch.manual_seed(1)
    logits = torch.randn(3, batch["input_ids"].shape[1], 4)
    hard = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum")
    assert float(soft_cross_entropy(logits, batch["labels"], batch["soft_labels"])) == pytest.approx(float(hard))
    # A batch without a labelled token: no rows, and a loss of 0, as the hard one.
    empty = PaddingCollator()([features[2], {**features[2], "input_ids": [0, 14, 2], "labels": [IGNORE] * 3}])
    assert float(soft_cross_entropy(torch.randn(2, 3, 4), empty["labels"], empty["soft_labels"])) == 0.0


def test_the_model_loss_takes_soft_targets_for_a_linear_head_summed_only():
    torch.manual_seed(2)
    linear, crf = (XLMRForTokenClassification(XLMRConfig(vocab_size=16, hidden_size=8, num_hidden_layers=0,
                                                         num_attention_heads=2, intermediate_size=8, head=head))
                   for head in ("linear", "crf"))
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[IGNORE, 3, 0, IGNORE]])
    targets = torch.softmax(torch.randn(2, 7), -1)
    expected = -(targets * logits[0, 1:3].log_softmax(-1)).sum()
    assert linear.loss(logits, labels, reduction="sum", targets=targets).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="soft targets train a linear head with reduction='sum'"):
        linear.loss(logits, labels, reduction="mean", targets=targets)
    with pytest.raises(ValueError, match="soft targets train a linear head"):
        crf.loss(logits, labels, reduction="sum", targets=targets)
