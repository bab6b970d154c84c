"""Turning logits into seqeval's tag lists, and F1 through `evaluate` with oracle models (real
tiny models whose weights give each input id a fixed tag: tests.tiny.lookup_model)."""
from __future__ import annotations

from datasets import Dataset
from seqeval.metrics import f1_score

from evaluation.predict import evaluate
from tests.tiny import lookup_model

ID2LABEL = dict(enumerate(["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]))


def oracle(table: dict[int, int]):
    """Predicts a fixed tag per input id: the gold tag, or a corrupted one (O for ids not in the
    table). The loss and the decoding are the real head's."""
    return lookup_model(table, vocab_size=16, untagged=5.0)


def data():
    # Three sentences; id k at a labelled position always has the same gold tag.
    gold = {10: 1, 11: 2, 12: 0, 13: 5, 14: 3, 15: 4}
    rows = [[0, 10, 11, 12, 2], [0, 13, 12, 2], [0, 14, 15, 12, 13, 2]]
    labels = [[-100] + [gold[i] for i in r[1:-1]] + [-100] for r in rows]
    return gold, Dataset.from_dict({"input_ids": rows, "labels": labels}), labels


def test_evaluate_perfect_and_corrupted():
    gold, ds, labels = data()
    assert evaluate(oracle(gold), ds, ID2LABEL, batch_size=2)["f1"] == 1.0
    wrong = {**gold, 13: 1}  # every LOC becomes a PER
    result = evaluate(oracle(wrong), ds, ID2LABEL, batch_size=2)
    y_true = [[ID2LABEL[x] for x in row if x != -100] for row in labels]
    y_pred = [[ID2LABEL[wrong[i]] for i, x in zip(r, row) if x != -100] for r, row in zip(ds["input_ids"], labels)]
    assert abs(result["f1"] - f1_score(y_true, y_pred)) < 1e-12
    assert abs(result["f1"] - 0.5) < 1e-12  # 2 of 4 entities right, 2 of 4 predicted right, by hand
