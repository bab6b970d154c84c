"""The zero-shot sweep: its F1 against `eval.py test`, independence from the other languages in
the sweep, resuming, and the tables, on a tiny random model and the first sentences of the real
test files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import eval as ev
from evaluation.sweep import mean_line, side_by_side, summarise
from tests.test_train import tiny_checkpoint

LANGS = ("de", "fr", "ja", "ar", "hi", "zh")


@pytest.fixture(scope="module")
def small_xtreme(panx_xtreme_dir, tmp_path_factory) -> Path:
    """The first 40 test sentences of six languages, and train/dev files for de and fr so that
    `eval.py test` can read them too."""
    out = tmp_path_factory.mktemp("xtreme-small")
    for lang in LANGS:
        text = (panx_xtreme_dir / f"test-{lang}.tsv").read_text(encoding="utf-8")
        head = "\n\n".join(text.split("\n\n")[:40]) + "\n"
        (out / f"test-{lang}.tsv").write_text(head, encoding="utf-8")
        if lang in ("de", "fr"):
            for split in ("train", "dev"):
                (out / f"{split}-{lang}.tsv").write_text(head, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def tiny(spm_path, tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-sweep"), spm_path, dropout=0.0)


def sweep(tiny, data, out, *langs, extra=()):
    argv = ["sweep", "--model", str(tiny), "--data-dir", str(data), "--amp", "off", "--output-dir", str(out),
            "--batch-size", "7", *extra]
    if langs:
        argv += ["--langs", *langs]
    assert ev.main(argv) == 0
    return json.loads((out / tiny.name / "sweep.json").read_text())


def f1_of(summary):
    return {r["lang"]: r["f1"] for r in summary["rows"]}


def test_sweep_f1_equals_eval_test(tiny, small_xtreme, tmp_path):
    summary = sweep(tiny, small_xtreme, tmp_path / "sweep")
    assert sorted(f1_of(summary)) == sorted(LANGS)
    assert ev.main(["test", "--model", str(tiny), "--langs", "de", "fr", "--data-dir", str(small_xtreme),
                    "--full-splits", "--amp", "off", "--output", str(tmp_path / "test.json")]) == 0
    test = json.loads((tmp_path / "test.json").read_text())
    for lang in ("de", "fr"):
        assert f1_of(summary)[lang] == test["langs"][lang]["f1"]
    rows = {r["lang"]: r for r in summary["rows"]}
    assert rows["de"]["sentences"] == 40
    # Entities counted straight from the file's B- tags (PAN-X opens every entity with one).
    gold = [line.split("\t")[1] for line in (small_xtreme / "test-de.tsv").read_text(encoding="utf-8").splitlines() if line]
    assert rows["de"]["entities"] == sum(t.startswith("B-") for t in gold)
    # The predictions file lists every word with the file's gold tag.
    predicted = (tmp_path / "sweep" / tiny.name / "predictions" / "test-de.tsv").read_text(encoding="utf-8")
    assert [line.split("\t")[1] for line in predicted.splitlines() if line] == gold
    with open(tmp_path / "sweep" / tiny.name / "sweep.csv", encoding="utf-8") as f:
        assert [r["lang"] for r in csv.DictReader(f)] == [r["lang"] for r in summary["rows"]]
    assert (tmp_path / "sweep" / tiny.name / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_language_scores_the_same_whatever_shares_the_sweep(tiny, small_xtreme, tmp_path):
    alone = sweep(tiny, small_xtreme, tmp_path / "alone", "de")
    mixed = sweep(tiny, small_xtreme, tmp_path / "mixed", "ja", "de", "zh", "ar", extra=["--chunk-sentences", "1"])
    assert f1_of(alone)["de"] == f1_of(mixed)["de"]
    a, b = ((tmp_path / x / tiny.name / "predictions" / "test-de.tsv").read_text() for x in ("alone", "mixed"))
    assert a == b


def test_sweep_resumes_per_language(tiny, small_xtreme, tmp_path):
    out = tmp_path / "resume"
    first = sweep(tiny, small_xtreme, out, "de", "fr")
    langs = out / tiny.name / "langs"
    stamp = (langs / "de.json").stat().st_mtime_ns
    (langs / "fr.json").unlink()  # as if killed before fr was written
    second = sweep(tiny, small_xtreme, out, "de", "fr")
    assert (langs / "de.json").stat().st_mtime_ns == stamp and (langs / "fr.json").is_file()
    assert f1_of(first) == f1_of(second)


def test_missing_language_is_a_clear_error(tiny, small_xtreme, capsys):
    assert ev.main(["sweep", "--model", str(tiny), "--data-dir", str(small_xtreme), "--langs", "de", "xx"]) == 1
    assert "test-xx.tsv" in capsys.readouterr().err


def test_summary_by_hand():
    def r(f1):
        return {"f1": f1, "precision": f1, "recall": f1, "sentences": 10, "entities": 5}

    results = {"de": r(0.8), "en": r(0.6), "zh": r(0.2), "ja": r(0.1)}
    s = summarise(results, train_langs=["en"])
    assert [x["lang"] for x in s["rows"]] == ["de", "en", "zh", "ja"]
    assert s["mean_f1"] == pytest.approx(0.425)
    assert [x["trained_on"] for x in s["rows"]] == [False, True, False, False]
    by_family = {g["family"]: g for g in s["by_family"]}
    assert by_family["Germanic"]["mean_f1"] == pytest.approx(0.7) and by_family["Germanic"]["languages"] == ["de", "en"]
    assert [g["script"] for g in s["by_script"]] == ["Latin", "Han", "Han+kana"]
    assert "XTREME's 40 without af, ar" in mean_line(s)
    table = side_by_side({"en": s, "de": summarise({"de": r(0.9), "en": r(0.5)}, ["de"])})
    assert "| de | Latin | 0.800 | 0.900* |" in table and "| ja | Han+kana | 0.100 | - |" in table
