"""Lenient against strict IOB2 scoring of a sweep's predictions, per language.

seqeval's default (the book's and XTREME's) is lenient: an I-X after O or after another type
opens a new entity, so an invalid output such as `B-ORG I-LOC I-LOC` still finds the LOC. Its
strict IOB2 mode scores an entity only where the tags spell one validly. Viterbi only emits valid
sequences, so the two modes agree on its output; where argmax beats Viterbi under the lenient
mode alone, the gain came from reading invalid tags (docs/zero-shot.md, Indonesian).

    python -m evaluation.strictness SWEEP_DIR --langs id jv de

SWEEP_DIR is a sweep's output for one model, holding argmax/ and viterbi/ (from
`eval.py sweep --decode argmax viterbi`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from seqeval.metrics import f1_score
from seqeval.scheme import IOB2


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag sequences from a sweep's predictions file (word, gold, predicted)."""
    gold, pred, g, p = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if g:
                gold.append(g)
                pred.append(p)
                g, p = [], []
            continue
        _, gold_tag, pred_tag = line.split("\t")
        g.append(gold_tag)
        p.append(pred_tag)
    return gold, pred


def lenient_and_strict(gold: list[list[str]], pred: list[list[str]]) -> tuple[float, float]:
    return f1_score(gold, pred), f1_score(gold, pred, mode="strict", scheme=IOB2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--langs", nargs="+", required=True)
    args = ap.parse_args(argv)
    print("| lang | argmax lenient | argmax strict | viterbi lenient | viterbi strict |")
    print("|---|---:|---:|---:|---:|")
    for lang in args.langs:
        cells = []
        for decode in ("argmax", "viterbi"):
            cells += lenient_and_strict(*read_predictions(args.sweep_dir / decode / "predictions" / f"test-{lang}.tsv"))
        print(f"| {lang} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
