"""Error analysis and the experiments command, on a tiny random model and a few real sentences."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import eval as ev
from experiments import crosslingual
from tests.tiny import panx_head, tiny_checkpoint
from loaders.panx import TAGS
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model


@pytest.fixture(scope="module")
def small_panx4(panx_dir, tmp_path_factory) -> Path:
    """The first sentences of the real files of all four languages: 48 train, 24 dev, 16 test."""
    return panx_head(panx_dir, tmp_path_factory.mktemp("panx-small4"), ("de", "fr", "it", "en"),
                     (("train", 48), ("dev", 24), ("test", 16)))


@pytest.fixture(scope="module")
def tiny(spm_path, tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny-analysis"), spm_path, dropout=0.0)


def gold_tags(tsv: Path) -> list[list[str]]:
    """Tags straight from the TSV file, independent of our loaders."""
    sentences = [block for block in tsv.read_text(encoding="utf-8").split("\n\n") if block.strip()]
    return [[line.split("\t")[1] for line in block.splitlines()] for block in sentences]


def test_error_analysis_tables(tiny, small_panx4, tmp_path):
    out = tmp_path / "errors"
    rc = ev.main(["errors", "--model", str(tiny), "--langs", "de", "--data-dir", str(small_panx4), "--full-splits",
                  "--amp", "off", "--top", "3", "--token", "▁(", "--output-dir", str(out)])
    assert rc == 0
    gold = gold_tags(small_panx4 / "dev-de.tsv")
    with open(out / "token_losses.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # One row per word of the file, with the file's tag as gold.
    assert [r["label"] for r in rows] == [t for s in gold for t in s]

    # Losses against a forward pass of our own over the first sentence.
    model, tok = load_model(tiny).eval(), XLMRTokenizer(tiny)
    words = [line.split("\t")[0] for line in (small_panx4 / "dev-de.tsv").read_text(encoding="utf-8")
             .split("\n\n")[0].splitlines()]
    enc = tok.encode_words(words)  # the same pieces as the default alignment; heads worked out here
    pieces = tok.convert_ids_to_tokens(enc.input_ids)
    first = []
    for i, w in enumerate(enc.word_ids):
        if w is not None and (i == 0 or enc.word_ids[i - 1] != w):
            # A word's label sits on its first piece, or on the next one when the first is a bare '▁'.
            bare = pieces[i] == "▁" and i + 1 < len(pieces) and enc.word_ids[i + 1] == w
            first.append(i + 1 if bare else i)
    with torch.no_grad():
        logits, _ = model(torch.tensor([enc.input_ids]))
    expected = F.cross_entropy(logits[0, first], torch.tensor([TAGS.index(t) for t in gold[0]]), reduction="none")
    got = [float(r["loss"]) for r in rows if r["sentence"] == "0"]
    torch.testing.assert_close(torch.tensor(got), expected, atol=1e-4, rtol=1e-4)

    # Grouped tables: counts add up to the token count; sums are the per-token sums.
    with open(out / "loss_by_token.csv", encoding="utf-8") as f:
        by_token = list(csv.DictReader(f))
    assert sum(int(r["count"]) for r in by_token) == len(rows)
    top = by_token[0]
    assert float(top["sum"]) == pytest.approx(sum(float(r["loss"]) for r in rows if r["token"] == top["token"]), rel=1e-3)
    assert float(top["sum"]) == max(float(r["sum"]) for r in by_token)
    with open(out / "loss_by_label.csv", encoding="utf-8") as f:
        by_label = list(csv.DictReader(f))
    counts = {t: sum(s.count(t) for s in gold) for t in TAGS}
    assert {r["label"]: int(r["count"]) for r in by_label} == {t: n for t, n in counts.items() if n}
    means = [float(r["mean"]) for r in by_label]
    assert means == sorted(means, reverse=True)

    # The confusion matrix: 7x7, each gold row sums to 1 (or 0 for a tag absent from the split).
    with open(out / "confusion.csv", encoding="utf-8") as f:
        matrix = list(csv.DictReader(f))
    assert [r["gold"] for r in matrix] == list(TAGS)
    for r in matrix:
        total = sum(float(r[t]) for t in TAGS)
        assert total == pytest.approx(1.0 if counts[r["gold"]] else 0.0, abs=1e-3)
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sentences = json.loads((out / "sentences.json").read_text())
    losses = [s["loss"] for s in sentences["top_loss"]]
    assert len(losses) == 3 and losses == sorted(losses, reverse=True)
    for s in sentences["with_token"]["▁("]:
        assert "▁(" in [t["token"] for t in s["tokens"]]
    assert "tokens by summed loss" in (out / "report.txt").read_text()


def test_error_analysis_rejects_unknown_token(tiny, small_panx4, tmp_path, capsys):
    rc = ev.main(["errors", "--model", str(tiny), "--langs", "de", "--data-dir", str(small_panx4), "--full-splits",
                  "--token", "▁nopiece§§", "--output-dir", str(tmp_path / "e")])
    assert rc == 1
    assert "not a sub-word" in capsys.readouterr().err


def test_crossing_point_by_hand():
    # Between 500 (0.5) and 1000 (0.8), 0.65 is halfway: in log space that is sqrt(500 * 1000).
    assert crosslingual.crossing_point([250, 500, 1000], [0.2, 0.5, 0.8], 0.65) == pytest.approx((500 * 1000) ** 0.5)
    assert crosslingual.crossing_point([250, 500], [0.7, 0.8], 0.65) == 250
    assert crosslingual.crossing_point([250, 500], [0.1, 0.2], 0.65) is None


def test_transfer_table_by_hand():
    results = {"de": {"test_f1": {"de": 0.8, "fr": 0.7, "it": 0.6, "en": 0.5}},
               "fr": {"test_f1": {"fr": 0.75}}, "all": {"test_f1": {"de": 0.81, "fr": 0.8, "it": 0.79, "en": 0.7}}}
    table = crosslingual.transfer_table(results)
    assert table["each"] == {"de": 0.8, "fr": 0.75, "it": None, "en": None}
    assert table["de-fr"] == {"de": None, "fr": None, "it": None, "en": None}
    md = crosslingual.table_markdown(table)
    assert md.splitlines()[0] == "| trained on | de | fr | it | en |"
    assert "| each | 0.800 | 0.750 | - | - |" in md
    assert crosslingual.table_csv(table).splitlines()[3] == "all,0.8100,0.8000,0.7900,0.7000"


@pytest.mark.slow
def test_experiments_run_resume_and_tables(tiny, small_panx4, tmp_path):
    root = tmp_path / "exp"
    argv = ["experiments", "--model", str(tiny), "--data-dir", str(small_panx4), "--set", "full_splits=true",
            "--amp", "off", "--output-dir", str(root), "--only", "de", "curve", "--curve-sizes", "16", "32",
            "--set", "epochs=1", "--set", "no_progress=true"]
    assert ev.main(argv) == 0
    runs = {name: json.loads((root / name / "results.json").read_text()) for name in ("de", "fr-16", "fr-32")}
    assert runs["fr-16"]["config"]["train_sentences"] == 16 and runs["fr-16"]["config"]["langs"] == ["fr"]
    assert list(runs["de"]["test_f1"]) == ["de", "fr", "it", "en"]
    md = (root / "f1_table.md").read_text().splitlines()
    assert md[2] == "| de | " + " | ".join(f"{runs['de']['test_f1'][x]:.3f}" for x in ("de", "fr", "it", "en")) + " |"
    curve = (root / "learning_curve.csv").read_text().splitlines()
    assert curve == ["fr_train_sentences,fr_test_f1"] + [f"{n},{runs[f'fr-{n}']['test_f1']['fr']:.4f}" for n in (16, 32)]
    assert (root / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((root / "experiments.json").read_text())
    assert summary["zero_shot_fr"] == runs["de"]["test_f1"]["fr"]

    # A second call finds every run done and trains nothing: results.json files are untouched.
    stamps = {n: (root / n / "results.json").stat().st_mtime_ns for n in runs}
    assert ev.main(argv) == 0
    assert {n: (root / n / "results.json").stat().st_mtime_ns for n in runs} == stamps


def test_tag_command(tiny, tmp_path, capsys):
    text = "Jeff Dean ist ein Informatiker bei Google in Kalifornien"
    out = tmp_path / "tags.json"
    assert ev.main(["tag", "--model", str(tiny), "--amp", "off", "--aggregation", "average", text, "  ",
                    "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "▁Jeff" in printed and "== text 2: 0 words" in printed
    tagged = json.loads(out.read_text())
    assert [text[a:b] for a, b in tagged[0]["words"]] == text.split()
    assert len(tagged[0]["word_tags"]) == 9 and set(tagged[0]["word_tags"]) <= set(TAGS)
    for e in tagged[0]["entities"]:
        assert text[e["start"]:e["end"]] == e["text"]


def test_tag_input_without_output_prints_every_text(tiny, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "Jeff Dean ist bei Google", "id": 7}\n{"text": "Paris"}\n', encoding="utf-8")
    assert ev.main(["tag", "--model", str(tiny), "--amp", "off", "--input", str(texts), "--no-tokens"]) == 0
    printed = capsys.readouterr().out
    assert "== text 1: 5 words" in printed and "== text 2: 1 words" in printed and "▁Jeff" not in printed


def test_tag_command_errors(tiny, tmp_path, capsys):
    assert ev.main(["tag", "--model", str(tiny)]) == 1
    assert "nothing to tag" in capsys.readouterr().err
    assert ev.main(["tag", "--model", str(tmp_path / "missing"), "text"]) == 1
    assert "missing" in capsys.readouterr().err
    assert ev.main(["tag", "--model", str(tiny), "--input", str(tmp_path / "absent.txt")]) == 1
    assert "absent.txt" in capsys.readouterr().err


def test_test_command_is_the_default(tiny, small_panx4, tmp_path):
    common = ["--model", str(tiny), "--langs", "de", "fr", "--data-dir", str(small_panx4), "--full-splits", "--amp", "off"]
    assert ev.main([*common, "--output", str(tmp_path / "a.json")]) == 0
    assert ev.main(["test", *common, "--output", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert [a["langs"][x]["sentences"] for x in ("de", "fr")] == [len(gold_tags(small_panx4 / f"test-{x}.tsv"))
                                                                   for x in ("de", "fr")]
    assert a["langs"]["de"]["f1"] == b["langs"]["de"]["f1"]


def test_quick_preset_shortens_only_whole_language_runs(monkeypatch, tmp_path):
    seen = {}

    def fake_train(args):
        seen[Path(args.output_dir).name] = (args.epochs, args.langs, args.num_samples)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "model.safetensors").write_bytes(b"weights")
        return {"test_f1": {lang: 0.5 for lang in args.eval_langs}, "config": {"epochs": args.epochs,
                "train_sentences": 1}, "throughput": {"train_seconds": 0.0}}

    monkeypatch.setattr(crosslingual, "train", fake_train)
    assert ev.main(["experiments", "--model", "m", "--quick", "--output-dir", str(tmp_path), "--amp", "off",
                    "--drop-weights"]) == 0
    assert seen == {"de": (1, ["de"], None), "fr-250": (3, ["fr"], 250), "fr-500": (3, ["fr"], 500),
                    "fr-1000": (3, ["fr"], 1000), "fr-2000": (3, ["fr"], 2000), "fr-4000": (3, ["fr"], 4000),
                    "fr": (1, ["fr"], None), "it": (1, ["it"], None), "en": (1, ["en"], None),
                    "de-fr": (1, ["de", "fr"], None), "all": (1, ["de", "fr", "it", "en"], None)}
    assert "| each | 0.500 | 0.500 | 0.500 | 0.500 |" in (tmp_path / "f1_table.md").read_text()
    assert sorted(p.parent.name for p in tmp_path.glob("*/model.safetensors")) == ["de"]  # --drop-weights
