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
from tests.tiny import hf_first_subword_tags, tiny_checkpoint

LANGS = ("de", "fr", "ja", "ar", "hi", "zh")
TAG_NAMES = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


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


@pytest.fixture(scope="module")
def trained(tiny, small_xtreme, tmp_path_factory) -> Path:
    """The tiny model trained for a few epochs on the 40 German sentences it is then tested on:
    half learnt by heart, so its F1 is well off both 0 and 1 and a wrong word or tag shows."""
    import train_loop
    from training import loop

    out = tmp_path_factory.mktemp("trained") / "de"
    args = ["--langs", "de", "--eval-langs", "de", "--model", str(tiny), "--data-dir", str(small_xtreme),
            "--full-splits", "--output-dir", str(out), "--batch-size", "4", "--lr", "1e-2", "--epochs", "4",
            "--amp", "off", "--no-progress"]
    loop.train(train_loop.config_from(train_loop.build_parser().parse_args(args)))
    return out


@pytest.mark.slow
def test_sweep_of_a_trained_model_matches_transformers_and_seqeval(trained, small_xtreme, tmp_path):
    """Independent of our encoder, tokenizer glue and scoring: the checkpoint exported to
    Hugging Face, run by transformers on the words (is_split_into_words, first sub-word's
    argmax) and scored by seqeval, gives the sweep's F1 with the book's alignment and decoding
    (--unspaced words --decode argmax)."""
    from seqeval.metrics import f1_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from loaders.panx import read_panx
    from xlmr.weights import export_hf, load_model

    summary = sweep(trained, small_xtreme, tmp_path / "sweep", "de", "fr",
                    extra=["--decode", "argmax", "--unspaced", "words"])
    export_hf(load_model(trained), tmp_path / "hf", tokenizer_file=trained / "sentencepiece.bpe.model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    for lang in ("de", "fr"):
        data = read_panx(small_xtreme / f"test-{lang}.tsv", lang)
        y_true, y_pred = [], []
        for words, tags in zip(data["tokens"], data["ner_tags"]):
            y_pred.append(hf_first_subword_tags(hf, tok, words))
            y_true.append([hf.config.id2label[t] for t in tags])
        reference = f1_score(y_true, y_pred)
        if lang == "de":
            assert 0.15 < reference < 0.95, reference  # neither all wrong nor all right
        assert f1_of(summary)[lang] == pytest.approx(reference, abs=1e-9)


def entity_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first word, last word) of each entity, read as conlleval reads IOB2: a B-X opens
    one, and so does an I-X that does not continue an entity of type X."""
    spans, open_ = set(), None
    for i, tag in enumerate([*tags, "O"]):
        kind, _, kind_type = tag.partition("-")
        continues = kind == "I" and open_ is not None and open_[0] == kind_type
        if open_ is not None and not continues:
            spans.add((open_[0], open_[1], i - 1))
            open_ = None
        if kind in ("B", "I") and not continues:
            open_ = (kind_type, i)
    return spans


def counted_scores(predictions: str) -> dict:
    """Entity precision, recall and F1 counted by hand from a predictions file (word, gold tag,
    predicted tag), without seqeval."""
    gold, found = set(), set()
    for n, block in enumerate(b for b in predictions.split("\n\n") if b.strip()):
        rows = [line.split("\t") for line in block.splitlines()]
        gold |= {(n, *span) for span in entity_spans([r[1] for r in rows])}
        found |= {(n, *span) for span in entity_spans([r[2] for r in rows])}
    hits = len(gold & found)
    precision, recall = hits / max(len(found), 1), hits / max(len(gold), 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "entities": len(gold)}


@pytest.mark.slow
def test_sweep_scores_are_the_counts_of_its_predictions_and_equal_eval_test(trained, small_xtreme, tmp_path):
    """Every language's precision, recall and F1 (Viterbi decoding, Han runs for zh and ja)
    recounted by hand from the predictions file, whose words and gold tags are the test file's;
    and de, fr equal to `eval.py test`'s on the same sentences."""
    from loaders.panx import read_panx

    tiny = trained  # a model with an F1 well off 0
    summary = sweep(tiny, small_xtreme, tmp_path / "sweep")
    assert sorted(f1_of(summary)) == sorted(LANGS)
    assert f1_of(summary)["de"] > 0.15
    rows = {r["lang"]: r for r in summary["rows"]}
    for lang in LANGS:
        predicted = (tmp_path / "sweep" / tiny.name / "predictions" / f"test-{lang}.tsv").read_text(encoding="utf-8")
        data = read_panx(small_xtreme / f"test-{lang}.tsv", lang)
        blocks = [[line.split("\t") for line in b.splitlines()] for b in predicted.split("\n\n") if b.strip()]
        assert [[r[0] for r in b] for b in blocks] == data["tokens"]
        assert [[r[1] for r in b] for b in blocks] == [[TAG_NAMES[t] for t in tags] for tags in data["ner_tags"]]
        counted = counted_scores(predicted)
        assert {k: rows[lang][k] for k in counted} == pytest.approx(counted, abs=1e-12), lang
    assert sum(0 < rows[lang]["f1"] < 1 for lang in LANGS) >= 3  # not all trivially 0 or 1
    assert ev.main(["test", "--model", str(tiny), "--langs", "de", "fr", "--data-dir", str(small_xtreme),
                    "--full-splits", "--amp", "off", "--output", str(tmp_path / "test.json")]) == 0
    test = json.loads((tmp_path / "test.json").read_text())
    for lang in ("de", "fr"):
        assert f1_of(summary)[lang] == test["langs"][lang]["f1"]
    assert rows["de"]["sentences"] == 40
    # Entities counted straight from the file's B- tags (PAN-X opens every entity with one).
    gold = [line.split("\t")[1] for line in (small_xtreme / "test-de.tsv").read_text(encoding="utf-8").splitlines() if line]
    assert rows["de"]["entities"] == sum(t.startswith("B-") for t in gold)
    with open(tmp_path / "sweep" / tiny.name / "sweep.csv", encoding="utf-8") as f:
        assert [r["lang"] for r in csv.DictReader(f)] == [r["lang"] for r in summary["rows"]]
    assert (tmp_path / "sweep" / tiny.name / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_language_scores_the_same_whatever_shares_the_sweep(tiny, small_xtreme, tmp_path):
    """Alone through `eval.py sweep`, or pooled with three other languages a sentence a chunk."""
    from argparse import Namespace

    from evaluation.sweep import find_test_sets, sweep as sweep_sets

    alone = sweep(tiny, small_xtreme, tmp_path / "alone", "de")
    model, tokenizer, device, amp = ev.load_for_cli(Namespace(model=str(tiny), device="cpu", amp="off"))
    mixed = sweep_sets(model, tokenizer, find_test_sets(small_xtreme, ["ja", "de", "zh", "ar"]), tmp_path / "mixed",
                       7, device, amp, chunk_sentences=1, progress=False)["viterbi"]
    assert f1_of(alone)["de"] == mixed["de"]["f1"]
    a, b = ((tmp_path / x / "predictions" / "test-de.tsv").read_text() for x in (f"alone/{tiny.name}", "mixed"))
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


@pytest.mark.parametrize("decode", ["viterbi", "argmax"])
def test_the_same_words_decode_alike_in_eval_test_the_sweep_and_the_tagger(tiny, small_xtreme, tmp_path, decode):
    """Word tags of de and zh sentences through `eval.py test`'s prediction, the sweep's
    predictions file and the raw-text tagger are identical (zh goes through the Han runs)."""
    from datasets import Dataset, DatasetDict

    from evaluation.predict import predict
    from loaders.align import encode_ner
    from loaders.panx import FEATURES, read_panx
    from xlmr.tagger import Tagger
    from xlmr.tokenizer import XLMRTokenizer
    from xlmr.weights import load_model
    from xlmr.words import split_words

    model, tokenizer = load_model(tiny), XLMRTokenizer(tiny)
    tags = [model.config.id2label[i] for i in range(7)]
    sweep(tiny, small_xtreme, tmp_path / "sweep", "de", "zh", extra=["--decode", decode])
    for lang, joiner in (("de", " "), ("zh", "")):
        ds = Dataset.from_dict(read_panx(small_xtreme / f"test-{lang}.tsv", lang), features=FEATURES)
        encoded = encode_ner(DatasetDict({"test": ds}), tokenizer)["test"]
        if lang == "de":  # some words are read from the piece after a bare '▁' ("(", "."): all three must agree
            assert sum(h > 1 and r["word_ids"][h - 1] == w == r["word_ids"][h]
                       for r in encoded for w, h in enumerate(r["word_heads"])) >= 5
        predicted = [[tags[t] for t in o["words"]] for o in predict(model, encoded, batch_size=5, decode=decode)]
        lines = (tmp_path / "sweep" / tiny.name / "predictions" / f"test-{lang}.tsv").read_text(encoding="utf-8")
        swept = [[line.split("\t")[2] for line in block.splitlines()] for block in lines.split("\n\n") if block]
        assert swept == predicted
        # The tagger on the sentence as raw text, where its own word split gives back the file's words.
        texts = [joiner.join(words) for words in ds["tokens"]]
        same = [i for i, t in enumerate(texts) if [t[a:b] for a, b in split_words(t)] == ds["tokens"][i]]
        assert len(same) >= 20
        tagged = Tagger(model, tokenizer)([texts[i] for i in same], decode=decode)
        assert [t.word_tags for t in tagged] == [predicted[i] for i in same]
        # Not a vacuous comparison: the random model does predict entities.
        assert sum(t != "O" for i in same for t in predicted[i]) > 10
