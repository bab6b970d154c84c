"""evaluation/scoring.py by hand: tag names, entity P/R/F1 and the per-type report counted on a
small example, the F1 row, and entity counts as seqeval's lenient mode reads them."""
from __future__ import annotations

import pytest

from evaluation.scoring import count_entities, entity_scores, f1_table, tag_names

PANX = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_tag_names_by_hand():
    id2label = dict(enumerate(PANX))
    assert tag_names([[1, 2, 0], [], [5]], id2label) == [["B-PER", "I-PER", "O"], [], ["B-LOC"]]


def test_entity_scores_and_report_by_hand():
    # Gold: PER (words 0-1) and LOC (word 3); ORG (word 0) in the second sentence: 3 entities.
    # Predicted: the PER, and a LOC where the ORG is: 2 entities, 1 right.
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O"]]
    scores = entity_scores(gold, pred)
    assert set(scores) == {"f1", "precision", "recall"}
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # 0.4
    full = entity_scores(gold, pred, report=True)
    report = full["report"]
    assert report["PER"] == {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 1}
    assert report["LOC"]["precision"] == 0.0 and report["LOC"]["support"] == 1
    assert report["ORG"]["recall"] == 0.0 and report["ORG"]["support"] == 1
    # The text report at three digits: "PER" with 1.000 three times and support 1.
    per_row = next(line.split() for line in full["report_text"].splitlines() if line.strip().startswith("PER"))
    assert per_row == ["PER", "1.000", "1.000", "1.000", "1"]


def test_f1_table_by_hand():
    assert f1_table({"de": 0.8444, "fr": 0.7}) == "| F1 | de | fr |\n|---|---|---|\n| test | 0.844 | 0.700 |"
    assert f1_table({"it": 0.5}, label="F1 (zero-shot)").splitlines()[0] == "| F1 (zero-shot) | it |"


def test_count_entities_reads_an_inside_tag_without_begin_as_an_entity():
    # I-PER I-PER: one PER (no B- needed); B-LOC; an I-ORG after it: a new ORG. Then two B-PER: two.
    assert count_entities([["I-PER", "I-PER", "O", "B-LOC", "I-ORG"], ["B-PER", "B-PER"], []]) == 5
