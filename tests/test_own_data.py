"""Your own data end to end, with a label set PAN-X does not have (PERSON, WORKS, CITY): CoNLL
files in three tag schemes -> one training epoch -> the checkpoint's id2label -> `eval.py test
--test-file` (its F1 against seqeval on transformers' predictions from the exported folder) ->
the tagger, the service over HTTP and transformers' pipeline, all returning the file's types."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from loaders.conll import to_iob2
from serving.server import Running, build_service
from tests.tiny import hf_first_subword_tags, post, tiny_checkpoint
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import export_hf, load_model

ROOT = Path(__file__).resolve().parents[1]
PERSONS = [["Goethe"], ["Thomas", "Mann"], ["Virginia", "Woolf"], ["Dante"], ["Umberto", "Eco"], ["Victor", "Hugo"]]
WORKS = [["Faust"], ["Buddenbrooks"], ["Orlando"], ["Inferno"], ["Der", "Zauberberg"], ["Les", "Misérables"]]
CITIES = [["Weimar"], ["Lübeck"], ["London"], ["Florenz"], ["Bologna"], ["Paris"]]
TEMPLATES = [["P", "schrieb", "W", "in", "C", "."], ["In", "C", "las", "man", "W", "von", "P", "."],
             ["W", "ist", "ein", "Werk", "von", "P", "."], ["P", "lebte", "lange", "in", "C", "."]]
LABELS = ["O", "B-CITY", "B-PERSON", "B-WORKS", "I-CITY", "I-PERSON", "I-WORKS"]  # O first, then sorted


def sentences(n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        tokens, tags = [], []
        for slot in rng.choice(TEMPLATES):
            kind, pool = {"P": ("PERSON", PERSONS), "W": ("WORKS", WORKS), "C": ("CITY", CITIES)}.get(slot, (None, None))
            words = rng.choice(pool) if pool else [slot]
            tokens += words
            tags += ["O"] if kind is None else [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
        yield tokens, tags


def write_conll(path: Path, data, scheme: str) -> Path:
    """IOB1 in CoNLL-2003's four columns with -DOCSTART-, BIOES with tabs, or IOB2."""
    lines = ["-DOCSTART- -X- -X- O", ""] if scheme == "iob1" else []
    for tokens, tags in data:
        written = list(tags)
        for i, tag in enumerate(tags):
            follows = i and tags[i - 1] != "O" and tags[i - 1][2:] == tag[2:]
            if scheme == "iob1" and tag.startswith("B-") and not follows:
                written[i] = "I-" + tag[2:]
            if scheme == "bioes" and tag != "O" and not (i + 1 < len(tags) and tags[i + 1].startswith("I-")):
                written[i] = ("S-" if tag.startswith("B-") else "E-") + tag[2:]
        assert to_iob2(written) == tags  # the file says the same entities in its scheme
        sep = "\t" if scheme == "bioes" else " "
        lines += [sep.join([t, "NN", "I-NP", g] if scheme == "iob1" else [t, g]) for t, g in zip(tokens, written)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(script: str, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / script), *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(spm_path, tmp_path_factory):
    """One epoch on 480 sentences from the tiny random model."""
    root = tmp_path_factory.mktemp("own-data")
    files = {"train": write_conll(root / "train.conll", sentences(480, 1), "iob1"),
             "validation": write_conll(root / "dev.bioes", sentences(60, 2), "bioes"),
             "test": write_conll(root / "test.conll", sentences(60, 3), "iob2")}
    model = tiny_checkpoint(root / "tiny", spm_path, dropout=0.0)
    r = run("train_loop.py", "--train-file", str(files["train"]), "--validation-file", str(files["validation"]),
            "--test-file", str(files["test"]), "--model", str(model), "--output-dir", str(root / "run"),
            "--epochs", "1", "--batch-size", "8", "--lr", "3e-3", "--no-progress")
    assert r.returncode == 0, r.stderr
    return root / "run", files


@pytest.mark.slow
def test_the_checkpoint_holds_the_files_labels(trained):
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(LABELS))] == LABELS
    results = json.loads((out / "results.json").read_text())
    assert set(results["test_f1"]) == {"test.conll"}


@pytest.mark.slow
def test_eval_test_file_against_seqeval_on_transformers(trained, tmp_path):
    from seqeval.metrics import f1_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out, files = trained
    # The book's alignment and decoding: transformers' counterpart reads each word's first piece.
    r = run("eval.py", "test", "--model", str(out), "--test-file", str(files["test"]), "--decode", "argmax",
            "--unspaced", "words", "--output", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    ours = json.loads((tmp_path / "r.json").read_text())["langs"]["test.conll"]["f1"]

    export_hf(load_model(out), tmp_path / "hf", tokenizer_file=out / "sentencepiece.bpe.model")
    hf = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    gold, pred = [], []
    for tokens, tags in sentences(60, 3):
        gold.append(tags)
        pred.append(hf_first_subword_tags(hf, tok, tokens))
    assert ours == pytest.approx(f1_score(gold, pred), abs=1e-9)
    assert ours > 0.5  # one epoch learns these templates


@pytest.mark.slow
def test_tagger_service_and_pipeline_return_the_files_types(trained, tmp_path):
    from transformers import pipeline

    out, _ = trained
    # No " ." at the end: SentencePiece cuts it as a lone "▁" then ".", and the pipeline, without
    # word ids, tags that "▁" as a word of its own.
    text = "Thomas Mann schrieb Buddenbrooks in Lübeck"
    tagger = Tagger(load_model(out), XLMRTokenizer(out))
    # The pipeline reads each word from its first piece, as the book's alignment does.
    mine = Tagger(tagger.model, tagger.tokenizer, unspaced="words")(text, decode="argmax").entities
    assert {e.type for e in mine} >= {"PERSON", "WORKS"}

    service = build_service(out, amp="off")
    with Running(service) as url:
        status, body = post(url, {"text": text})
    assert status == 200
    assert [(e["entity_group"], e["word"]) for e in body["entities"]] == [
        (e.type, e.text) for e in tagger(text).entities]
    assert {e["entity_group"] for e in body["entities"]} >= {"PERSON", "WORKS"}

    r = subprocess.run(
        [sys.executable, "-m", "xlmr.convert", str(out), str(tmp_path / "hf"), "--to-hf"], cwd=ROOT,
        capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ner = pipeline("ner", model=str(tmp_path / "hf"), aggregation_strategy="first", device=-1)
    theirs = [(e["entity_group"], e["start"], e["end"]) for e in ner(text)]
    assert theirs == [(e.type, e.start, e.end) for e in mine]
