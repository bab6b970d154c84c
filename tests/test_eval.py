"""Turning logits into seqeval's tag lists, and F1 through `evaluate` with oracle models."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from datasets import Dataset
from seqeval.metrics import f1_score

from evaluation.predict import evaluate
from xlmr.model import XLMRForTokenClassification

ID2LABEL = dict(enumerate(["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]))


class Oracle(torch.nn.Module):
    """Predicts a fixed tag per input id: the gold tag, or a corrupted one. The loss and the
    decoding are the real head's."""
    loss = XLMRForTokenClassification.loss
    decode = XLMRForTokenClassification.decode

    def __init__(self, table: dict[int, int]):
        super().__init__()
        self.table = table
        self.config = SimpleNamespace(id2label=ID2LABEL)

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, 7)
        for (b, t), i in zip(torch.cartesian_prod(*map(torch.arange, input_ids.shape)).tolist(), input_ids.flatten().tolist()):
            logits[b, t, self.table.get(i, 0)] = 5.0
        return logits, None


def data():
    # Three sentences; id k at a labelled position always has the same gold tag.
    gold = {10: 1, 11: 2, 12: 0, 13: 5, 14: 3, 15: 4}
    rows = [[0, 10, 11, 12, 2], [0, 13, 12, 2], [0, 14, 15, 12, 13, 2]]
    labels = [[-100] + [gold[i] for i in r[1:-1]] + [-100] for r in rows]
    return gold, Dataset.from_dict({"input_ids": rows, "labels": labels}), labels


def test_evaluate_perfect_and_corrupted():
    gold, ds, labels = data()
    assert evaluate(Oracle(gold), ds, ID2LABEL, batch_size=2)["f1"] == 1.0
    wrong = {**gold, 13: 1}  # every LOC becomes a PER
    result = evaluate(Oracle(wrong), ds, ID2LABEL, batch_size=2)
    y_true = [[ID2LABEL[x] for x in row if x != -100] for row in labels]
    y_pred = [[ID2LABEL[wrong[i]] for i, x in zip(r, row) if x != -100] for r, row in zip(ds["input_ids"], labels)]
    assert abs(result["f1"] - f1_score(y_true, y_pred)) < 1e-12
    assert abs(result["f1"] - 0.5) < 1e-12  # 2 of 4 entities right, 2 of 4 predicted right, by hand
