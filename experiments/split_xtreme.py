"""The honest protocol for adaptation on PAN-X: every XTREME test file cut into two halves, one
to adapt on (its words, no tags) and one to evaluate on, so no evaluation sentence is ever read by
training (docs/adaptation.md).

    python -m experiments.split_xtreme --data-dir ../shared/data/panx-xtreme --out DIR [--langs sw ta ...]

    DIR/adapt/<lang>.jsonl    the adaptation half: {"tokens": [...]} a sentence a line, tags dropped
                              (what `train_loop.py --unlabeled-file` reads)
    DIR/eval/test-<lang>.tsv  the evaluation half in the test file's layout: token<TAB>tag, a blank
                              line between sentences (what `eval.py sweep --data-dir DIR/eval` reads)
    DIR/split.json            the rule, and per language the sentences on each side

The rule: a sentence goes to the adaptation half when the first byte of the SHA-256 of its text
(its words joined by single spaces, UTF-8) is even, else to the evaluation half. The side depends
on the text alone, not on the sentence's place or language, so the split is the same on every
machine, and a text that occurs several times (PAN-X repeats many: 2,568 of Indonesian's 10,000
sentences repeat an earlier one; 1,749 texts occur in more than one language's file) always
lands on the same side: no text is ever in both halves of one file, nor in the adaptation half of
one language and the evaluation half of another. Both halves keep the file's order.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from evaluation.sweep import find_test_sets
from loaders.conll import NerDataError, read_conll
from xlmr.atomic import write_json_atomic, write_text_atomic

RULE = ("a sentence is in the adaptation half when the first byte of the SHA-256 of its words joined by single "
        "spaces (UTF-8) is even, else in the evaluation half")


def sentence_text(tokens: list[str]) -> str:
    return " ".join(tokens)


def for_adaptation(tokens: list[str]) -> bool:
    """Whether a sentence belongs to the adaptation half (the module's rule)."""
    return hashlib.sha256(sentence_text(tokens).encode("utf-8")).digest()[0] % 2 == 0


def split_file(path: Path, lang: str, out: Path) -> dict:
    """One test file into out/adapt/<lang>.jsonl and out/eval/test-<lang>.tsv; its counts."""
    sentences = read_conll(path, token_prefix=f"{lang}:", iob2=False)  # tags as written, as the sweep reads them
    if not sentences.tokens:
        raise NerDataError(f"{path}: no sentences")
    adapt, evaluate = [], []
    for tokens, tags in zip(sentences.tokens, sentences.tags):
        if for_adaptation(tokens):
            adapt.append(json.dumps({"tokens": tokens}, ensure_ascii=False))
        else:
            evaluate.append("\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags)))
    write_text_atomic(out / "adapt" / f"{lang}.jsonl", "".join(line + "\n" for line in adapt))
    write_text_atomic(out / "eval" / f"test-{lang}.tsv", "".join(block + "\n\n" for block in evaluate))
    texts = [sentence_text(t) for t in sentences.tokens]
    return {"file": str(path), "sentences": len(texts), "adapt": len(adapt), "eval": len(evaluate),
            "repeated": len(texts) - len(set(texts))}


def split_xtreme(data_dir, out, langs=None) -> dict[str, dict]:
    out = Path(out)
    (out / "adapt").mkdir(parents=True, exist_ok=True)
    (out / "eval").mkdir(exist_ok=True)
    counts = {lang: split_file(path, lang, out) for lang, path in find_test_sets(Path(data_dir), langs).items()}
    write_json_atomic(out / "split.json", {"rule": RULE, "languages": counts})
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder of XTREME's test-<lang>.tsv files")
    p.add_argument("--out", required=True, help="where adapt/, eval/ and split.json are written")
    p.add_argument("--langs", nargs="+", default=None, help="languages to split (default: every test file there)")
    args = p.parse_args(argv)
    try:
        counts = split_xtreme(args.data_dir, args.out, args.langs)
    except (NerDataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for lang, c in counts.items():
        print(f"{lang}: {c['sentences']} sentences -> adapt {c['adapt']}, eval {c['eval']}")
    print(f"wrote {args.out}/adapt, {args.out}/eval and {args.out}/split.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
