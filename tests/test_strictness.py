"""Lenient against strict scoring on a hand-made predictions file: the Indonesian redirect case."""
from __future__ import annotations

import pytest

from evaluation.strictness import lenient_and_strict, read_predictions


def test_an_invalid_output_scores_only_under_the_lenient_mode(tmp_path):
    # ALIH Komune di Gironde: gold O B-LOC I-LOC I-LOC. Argmax's B-ORG I-LOC I-LOC I-LOC is read
    # leniently as ORG(ALIH) + LOC(Komune di Gironde): 1 of 2 predicted right, 1 of 1 found, F1 2/3.
    # Strictly, I-LOC after B-ORG opens nothing: ORG alone, F1 0. A second sentence is right in both.
    lines = ["ALIH\tO\tB-ORG", "Komune\tB-LOC\tI-LOC", "di\tI-LOC\tI-LOC", "Gironde\tI-LOC\tI-LOC", "",
             "Paris\tB-LOC\tB-LOC", "liegt\tO\tO", ""]
    path = tmp_path / "test-id.tsv"
    path.write_text("\n".join(lines), encoding="utf-8")
    gold, pred = read_predictions(path)
    assert gold == [["O", "B-LOC", "I-LOC", "I-LOC"], ["B-LOC", "O"]]
    lenient, strict = lenient_and_strict(gold, pred)
    # Lenient: predicted ORG, LOC, LOC; gold LOC, LOC; 2 right: P 2/3, R 1, F1 0.8.
    assert lenient == pytest.approx(0.8)
    # Strict: predicted ORG, LOC; 1 right: P 1/2, R 1/2, F1 0.5.
    assert strict == pytest.approx(0.5)


def test_sentences_split_by_their_first_word(tmp_path, capsys):
    from evaluation.strictness import main

    # The redirect scores 0.8 / 0.5 (above); the other sentence is right under both modes.
    lines = ["ALIH\tO\tB-ORG", "Komune\tB-LOC\tI-LOC", "di\tI-LOC\tI-LOC", "", "Paris\tB-LOC\tB-LOC", "liegt\tO\tO", ""]
    for decode in ("argmax", "viterbi"):
        folder = tmp_path / decode / "predictions"
        folder.mkdir(parents=True)
        (folder / "test-id.tsv").write_text("\n".join(lines), encoding="utf-8")
    main([str(tmp_path), "--langs", "id", "--first-word", "ALIH"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| id")]
    assert rows[1] == "| id | starting ALIH (1) | 0.667 | 0.000 | 0.667 | 0.000 |"
    assert rows[2] == "| id | the others (1) | 1.000 | 1.000 | 1.000 | 1.000 |"
