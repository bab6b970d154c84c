"""The adaptation protocol's splitter on the real XTREME test files: every sentence lands in
exactly one half, in the file's order, and no sentence text is on both sides, in one language or
across languages (PAN-X repeats many texts, so a split by position would put copies on both)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from evaluation.sweep import find_test_sets
from experiments import split_xtreme
from loaders.panx import read_panx

# Small files, one with many repeats (id: 2,568 of 10,000), and two that share texts (de, en).
LANGS = ("sw", "jv", "id", "de", "en")


def sentences_of(path: Path) -> list[tuple[list[str], list[str]]]:
    """(tokens, tags) of a test file, read without the project's readers."""
    out = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        rows = [line.split("\t") for line in block.splitlines() if line.strip()]
        if rows:
            out.append(([r[0] for r in rows], [r[-1] for r in rows]))
    return out


def adaptation_half(path: Path) -> list[list[str]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(set(r) == {"tokens"} for r in records)  # the tags are dropped
    return [r["tokens"] for r in records]


@pytest.fixture(scope="module")
def split(panx_xtreme_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    assert split_xtreme.main(["--data-dir", str(panx_xtreme_dir), "--out", str(out), "--langs", *LANGS]) == 0
    return out


def test_every_sentence_lands_in_one_half_in_order(split, panx_xtreme_dir):
    counts = json.loads((split / "split.json").read_text())["languages"]
    for lang in LANGS:
        original = sentences_of(panx_xtreme_dir / f"test-{lang}.tsv")
        adapt = adaptation_half(split / "adapt" / f"{lang}.jsonl")
        evaluate = sentences_of(split / "eval" / f"test-{lang}.tsv")
        assert len(adapt) + len(evaluate) == len(original) == counts[lang]["sentences"]
        assert (counts[lang]["adapt"], counts[lang]["eval"]) == (len(adapt), len(evaluate))
        # Merging the halves back in file order gives the file: nothing lost, doubled or reordered,
        # and the evaluation half keeps each sentence's tags.
        a = e = 0
        for tokens, tags in original:
            if e < len(evaluate) and evaluate[e] == (tokens, tags):
                e += 1
            else:
                assert a < len(adapt) and adapt[a] == tokens, (lang, tokens)
                a += 1
        assert (a, e) == (len(adapt), len(evaluate))
        if len(original) >= 1000:
            assert 0.4 < len(adapt) / len(original) < 0.6


def test_no_text_is_on_both_sides_in_any_language(split, panx_xtreme_dir):
    written = {side: set() for side in ("adapt", "eval")}
    seen, repeated = set(), 0
    for lang in LANGS:
        written["adapt"] |= {" ".join(t) for t in adaptation_half(split / "adapt" / f"{lang}.jsonl")}
        written["eval"] |= {" ".join(t) for t, _ in sentences_of(split / "eval" / f"test-{lang}.tsv")}
        for tokens, _ in sentences_of(panx_xtreme_dir / f"test-{lang}.tsv"):
            repeated += " ".join(tokens) in seen
            seen.add(" ".join(tokens))
    assert repeated > 1000  # the check has teeth: these files repeat texts, within and across languages
    assert not written["adapt"] & written["eval"]
    # The documented rule, computed here: adaptation when the first byte of the text's SHA-256 is even.
    for side, texts in written.items():
        assert {hashlib.sha256(t.encode()).digest()[0] % 2 == 0 for t in texts} == {side == "adapt"}


def test_the_sweep_reads_the_evaluation_half(split):
    found = find_test_sets(split / "eval")
    assert sorted(found) == sorted(LANGS)
    counts = json.loads((split / "split.json").read_text())["languages"]
    assert len(read_panx(found["sw"], "sw")["tokens"]) == counts["sw"]["eval"]


def test_the_split_is_the_same_every_time(split, panx_xtreme_dir, tmp_path):
    assert split_xtreme.main(["--data-dir", str(panx_xtreme_dir), "--out", str(tmp_path), "--langs", "sw"]) == 0
    for name in ("adapt/sw.jsonl", "eval/test-sw.tsv"):
        assert (tmp_path / name).read_bytes() == (split / name).read_bytes()


def test_a_missing_language_is_named(panx_xtreme_dir, tmp_path, capsys):
    assert split_xtreme.main(["--data-dir", str(panx_xtreme_dir), "--out", str(tmp_path), "--langs", "xx"]) == 1
    assert "no test-xx.tsv" in capsys.readouterr().err
