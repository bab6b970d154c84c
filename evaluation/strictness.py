"""Lenient against strict IOB2 scoring of a sweep's predictions, per language.

seqeval's default (the book's and XTREME's) is lenient: an I-X after O or after another type
opens a new entity, so an invalid output such as `B-ORG I-LOC I-LOC` still finds the LOC. Its
strict IOB2 mode scores an entity only where the tags spell one validly. Viterbi only emits valid
sequences, so the two modes agree on its output; where argmax beats Viterbi under the lenient
mode alone, the gain came from reading invalid tags (docs/zero-shot.md, Indonesian).

    python -m evaluation.strictness SWEEP_DIR --langs id jv de
    python -m evaluation.strictness SWEEP_DIR --langs id --first-word ALIH   # redirects apart

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
    _, gold, pred = read_sentences(path)
    return gold, pred


def read_sentences(path: Path) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(each sentence's first word, gold tags, predicted tags) from a predictions file."""
    first, gold, pred, g, p, w = [], [], [], [], [], None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if g:
                first.append(w)
                gold.append(g)
                pred.append(p)
                g, p, w = [], [], None
            continue
        word, gold_tag, pred_tag = line.split("\t")
        w = word if w is None else w
        g.append(gold_tag)
        p.append(pred_tag)
    return first, gold, pred


def lenient_and_strict(gold: list[list[str]], pred: list[list[str]]) -> tuple[float, float]:
    return f1_score(gold, pred), f1_score(gold, pred, mode="strict", scheme=IOB2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--langs", nargs="+", required=True)
    ap.add_argument("--first-word", help="also score the sentences that start with this word (e.g. ALIH, a "
                    "redirect) and the others apart")
    args = ap.parse_args(argv)
    print("| lang | sentences | argmax lenient | argmax strict | viterbi lenient | viterbi strict |")
    print("|---|---|---:|---:|---:|---:|")
    for lang in args.langs:
        read = {d: read_sentences(args.sweep_dir / d / "predictions" / f"test-{lang}.tsv") for d in ("argmax", "viterbi")}
        subsets = {"all": lambda w: True}
        if args.first_word:
            subsets |= {f"starting {args.first_word}": lambda w: w == args.first_word,
                        "the others": lambda w: w != args.first_word}
        for name, keep in subsets.items():
            cells = []
            for first, gold, pred in read.values():
                chosen = [i for i, w in enumerate(first) if keep(w)]
                if chosen:  # seqeval refuses an empty list
                    cells += lenient_and_strict([gold[i] for i in chosen], [pred[i] for i in chosen])
            if cells:
                print(f"| {lang} | {name} ({len(chosen)}) | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
