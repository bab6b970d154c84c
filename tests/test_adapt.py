"""Adaptation to unlabeled text (`train_loop.py --teacher ... --unlabeled-file ...`) on the tiny
model and the real vocabulary: the teacher's tags checked against its tagger and against
transformers, the student a loadable checkpoint with the teacher's labels (PAN-X's, or a user's
own), the counts of what was read and used, the resumable targets, and bad input named by
file:line before anything slow."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_loop
from loaders.conll import NerDataError
from loaders.unlabeled import read_unlabeled
from tests.tiny import confident_checkpoint, hf_first_subword_tags, lookup_model, run_args, tiny_checkpoint
from training import TrainConfig
from training.pseudo_labels import tag_sentences
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import export_hf, load_model

ROOT = Path(__file__).resolve().parents[1]
SW_LINES, ZH_LINES, CAP = 40, 30, 25


def blocks(path: Path, n: int) -> list[list[str]]:
    """The words of the first n sentences of a PAN-X file."""
    text = path.read_text(encoding="utf-8").split("\n\n")[:n]
    return [[line.split("\t")[0] for line in b.splitlines()] for b in text]


@pytest.fixture(scope="module")
def texts(panx_xtreme_dir, tmp_path_factory) -> dict[str, Path]:
    """sw.txt: a text a line (and one blank line); zh.jsonl: tokens a line (and one {"text": ...})."""
    root = tmp_path_factory.mktemp("unlabeled")
    sw = [" ".join(words) for words in blocks(panx_xtreme_dir / "test-sw.tsv", SW_LINES)]
    (root / "sw.txt").write_text("\n".join(sw[:10] + [""] + sw[10:]) + "\n", encoding="utf-8")
    zh = [json.dumps({"tokens": words}, ensure_ascii=False) for words in blocks(panx_xtreme_dir / "test-zh.tsv", ZH_LINES)]
    zh[3] = json.dumps({"text": "我在北京大学工作，住在上海。"}, ensure_ascii=False)
    (root / "zh.jsonl").write_text("\n".join(zh) + "\n", encoding="utf-8")
    return {"sw": root / "sw.txt", "zh": root / "zh.jsonl"}


@pytest.fixture(scope="module")
def teacher(spm_path, small_panx, tmp_path_factory) -> Path:
    """A run folder (results.json names its German data) holding the confident tiny model: trained
    at learning rate 0, so its weights stay confident and its tags cannot flip on fp32 noise."""
    root = tmp_path_factory.mktemp("teacher")
    start = confident_checkpoint(root / "start", spm_path)
    assert train_loop.main(run_args(start, small_panx, root / "run", "--epochs", "1", "--lr", "0", "--amp", "off",
                                     "--num-samples", "16")) == 0
    return root / "run"


def adapt_args(teacher: Path, texts: dict, out: Path, *extra) -> list[str]:
    return ["--teacher", str(teacher), "--unlabeled-file", str(texts["sw"]), str(texts["zh"]), "--output-dir", str(out),
            "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--eval-langs", "de", "--amp", "off", "--no-progress",
            "--keep-last", "--set", f"adapt_sentences={CAP}", *extra]


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def adapted(teacher, texts, tmp_path_factory):
    before = file_hashes(teacher)
    out = tmp_path_factory.mktemp("adapted") / "student"
    assert train_loop.main(adapt_args(teacher, texts, out)) == 0
    assert file_hashes(teacher) == before  # nothing is written into the teacher's folder
    records = [json.loads(line) for line in (out / "pseudo-labels.jsonl").read_text(encoding="utf-8").splitlines()[1:]]
    return out, records


def test_the_student_is_a_checkpoint_with_the_teachers_labels(adapted, teacher):
    out, _ = adapted
    student = load_model(out)
    assert student.config.id2label == load_model(teacher).config.id2label
    changed = [k for k, v in load_file(out / "model.safetensors").items()
               if not torch.equal(v, load_file(teacher / "model.safetensors")[k])]
    assert changed  # it trained, from the teacher's weights
    results = json.loads((out / "results.json").read_text())
    assert results["adaptation"]["teacher"] == str(teacher) and results["config"]["model"] == str(teacher)
    assert set(results["test_f1"]) == {"de"}


def test_the_teachers_tags_are_its_taggers(adapted, teacher, texts, tokenizer):
    """The sw lines (and the zh sentences whose characters the tagger cuts into the same words), as
    the teacher's tagger tags their text: the same words and tags."""
    _, records = adapted
    assert (teacher / "sentencepiece.bpe.model").read_bytes() == Path(tokenizer.path).read_bytes()
    tagger = Tagger(load_model(teacher), tokenizer)  # the session's tokenizer: its Han runs are set up once
    lines = {lang: path.read_text(encoding="utf-8").splitlines() for lang, path in texts.items()}
    texts_of = [lines[r["lang"]][r["line"] - 1] for r in records]
    texts_of = [t if r["lang"] == "sw" else json.loads(t).get("text") or "".join(json.loads(t)["tokens"])
                for t, r in zip(texts_of, records)]
    compared = {"sw": 0, "zh": 0}
    for r, text, tagged in zip(records, texts_of, tagger(texts_of)):
        if [text[a:b] for a, b in tagged.words] != r["tokens"]:
            assert r["lang"] == "zh"  # a Latin run written a letter a word: the tagger makes it one word
            continue
        assert r["tags"] == tagged.word_tags, text
        compared[r["lang"]] += 1
    assert compared["sw"] == CAP and compared["zh"] >= 15
    assert {t for r in records for t in r["tags"]} - {"O"}  # the teacher tags entities


def test_counts_of_what_was_read_sampled_and_used(adapted, texts):
    out, records = adapted
    summary = json.loads((out / "results.json").read_text())["adaptation"]
    langs = summary["languages"]
    assert (langs["sw"]["sentences"], langs["sw"]["skipped_lines"], langs["zh"]["sentences"]) == (SW_LINES, 1, ZH_LINES)
    assert langs["sw"]["tagged"] == langs["zh"]["tagged"] == CAP  # the cap balances the two files
    assert summary["tagged_sentences"] == len(records) == 2 * CAP
    results = json.loads((out / "results.json").read_text())["config"]
    assert results["train_sentences"] == 2 * CAP  # every tagged sentence, and no source sentence (the default)
    assert results["validation_sentences"] == 64  # the teacher's German validation file, nothing else
    for lang, path in texts.items():  # sampled lines, in file order, each read once
        picked = [r["line"] for r in records if r["lang"] == lang]
        assert picked == sorted(set(picked)) and len(path.read_text().splitlines()) >= picked[-1]


def test_resume_trains_on_the_saved_targets(adapted, teacher, texts, tmp_path, capsys):
    out, _ = adapted
    copy = tmp_path / "student"
    shutil.copytree(out, copy)
    capsys.readouterr()
    # The finished run's last/ state (--keep-last): resuming only finishes again, on the saved tags.
    assert train_loop.main(adapt_args(teacher, texts, copy, "--resume", str(copy))) == 0
    said = capsys.readouterr().out
    assert "reusing the teacher's tags" in said and "tagging" not in said
    assert train_loop.main(adapt_args(teacher, texts, copy, "--resume", str(copy), "--set", "adapt_sentences=20")) == 1
    assert "made with other adapt_sentences" in capsys.readouterr().err
    (copy / "pseudo-labels.jsonl").unlink()
    assert train_loop.main(adapt_args(teacher, texts, copy, "--resume", str(copy))) == 1
    assert "pseudo-labels.jsonl is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_teacher_tags_match_transformers(teacher, texts, tmp_path):
    """The book's alignment and decoding (each word's first piece, argmax), so transformers'
    model exported from the teacher gives every word's tag without our code."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    sentences = read_unlabeled(texts["sw"]).tokens[:20] + read_unlabeled(texts["zh"]).tokens[:10]
    cfg = TrainConfig(decode="argmax", unspaced="words", amp="off", device="cpu", no_progress=True)
    tags, _ = tag_sentences(teacher, sentences, XLMRTokenizer(teacher), cfg)
    export_hf(load_model(teacher), tmp_path / "hf", tokenizer_file=teacher / "sentencepiece.bpe.model")
    hf = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tags == [hf_first_subword_tags(hf, tok, words) for words in sentences]


def test_text_lines_are_cut_as_the_tagger_cuts_them(tokenizer, tmp_path):
    lines = ["Angela Merkel (CDU) besuchte Paris.", "我在北京大学工作", "ผมอาศัยอยู่ที่กรุงเทพ", "नरेंद्र मोदी दिल्ली में"]
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(lines[:2] + ["   ", "\u200b"] + lines[2:]) + "\n", encoding="utf-8")
    text = read_unlabeled(path, tokenizer.piece_spans)
    tagger = Tagger(lookup_model({}), tokenizer)
    assert text.tokens == [[t[a:b] for a, b in tagger(t).words] for t in lines]
    assert text.lines == [1, 2, 5, 6] and text.skipped == 2 and text.name == "mixed"
    assert len(text.tokens[2]) > 1  # Thai, written without spaces, cut by SentencePiece
    as_json = tmp_path / "mixed.jsonl"
    as_json.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in lines) + "\n", encoding="utf-8")
    assert read_unlabeled(as_json, tokenizer.piece_spans).tokens == text.tokens


@pytest.mark.parametrize("name, content, message", [
    ("a.jsonl", '{"tokens": ["Nairobi"]}\n{"tokens": ["ni"]}\n{"tokens": ["mji"\n', "a.jsonl:3: not a JSON object"),
    ("a.jsonl", '{"tokens": ["Nairobi"]}\n{"tokens": ["ni", 5]}\n', "a.jsonl:2: token 1 is 5"),
    ("a.jsonl", '{"tokens": ["Nairobi"]}\n\n{"tokens": [" "]}\n', "a.jsonl:3: token 0 is ' '"),
    ("a.jsonl", '{"words": ["Nairobi"]}\n', "a.jsonl:1: expected an object with 'tokens'"),
    ("a.jsonl", '{"tokens": "Nairobi ni mji"}\n', "a.jsonl:1: 'tokens' must be a list"),
    ("a.jsonl", '{"text": ["Nairobi"]}\n', "a.jsonl:1: 'text' must be a string"),
    ("a.jsonl", '["Nairobi"]\n', "a.jsonl:1: expected an object"),
    ("a.txt", b"Nairobi ni mji\nmkuu wa \xff Kenya\n", "a.txt:2: not UTF-8"),
    ("a.txt", "\n  \n", "a.txt: no sentences"),
])
def test_a_bad_line_is_named_by_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(NerDataError, match=f"{tmp_path}/{message}".replace("[", r"\[").replace("(", r"\(")):
        read_unlabeled(path)


def test_bad_input_stops_the_run_before_anything_slow(teacher, texts, tiny, tmp_path, capsys):
    bad = tmp_path / "ta.jsonl"
    bad.write_text('{"tokens": ["சென்னை"]}\n{"tokens": ["x"]}\n{"tokens": 3}\n', encoding="utf-8")
    cases = [
        (["--unlabeled-file", str(texts["sw"]), str(bad)], f"{bad}:3: 'tokens' must be a list"),
        (["--unlabeled-file", str(tmp_path / "none.txt")], "no unlabeled text file at"),
        (["--output-dir", str(teacher)], "is the teacher's folder"),
        (["--teacher", str(tiny.parent / "nowhere")], "no config.json"),
    ]
    for extra, expected in cases:
        args = ["--teacher", str(teacher), "--unlabeled-file", str(texts["sw"]), "--output-dir", str(tmp_path / "out"),
                "--no-progress", *extra]
        assert train_loop.main(args) == 1
        captured = capsys.readouterr()
        assert expected in captured.err and "tagging" not in captured.out, (extra, captured)
    assert not (tmp_path / "out" / "pseudo-labels.jsonl").exists()
    assert train_loop.main(["--teacher", str(teacher), "--unlabeled-file", str(texts["sw"])]) == 1
    assert "--teacher needs --output-dir" in capsys.readouterr().err


# -- a user's own label set -------------------------------------------------------------------

OWN = ["O", "B-CITY", "B-PERSON", "I-CITY", "I-PERSON"]  # O first, then sorted: the training file's order


def own_sentences(n: int) -> list[str]:
    people, cities = ["Goethe", "Thomas Mann", "Dante", "Umberto Eco"], ["Weimar", "Lübeck", "Florenz", "Bologna"]
    lines = []
    for i in range(n):
        person, city = people[i % 4].split(), cities[(i // 4) % 4]
        tags = ["B-PERSON"] + ["I-PERSON"] * (len(person) - 1) + ["O", "O", "B-CITY", "O"]
        lines += [f"{w} {t}" for w, t in zip(person + ["lebte", "in", city, "."], tags)] + [""]
    return lines


def test_a_model_of_the_users_own_labels_adapts(spm_path, texts, tmp_path):
    for name, n in (("train.conll", 48), ("dev.conll", 8)):
        (tmp_path / name).write_text("\n".join(own_sentences(n)) + "\n", encoding="utf-8")
    start = tiny_checkpoint(tmp_path / "tiny", spm_path, labels=len(OWN), dropout=0.0)
    common = ["--epochs", "1", "--batch-size", "24", "--lr", "3e-3", "--amp", "off", "--no-progress"]
    assert train_loop.main(["--train-file", str(tmp_path / "train.conll"), "--validation-file",
                            str(tmp_path / "dev.conll"), "--model", str(start), "--output-dir", str(tmp_path / "own"),
                            *common]) == 0
    assert train_loop.main(["--teacher", str(tmp_path / "own"), "--unlabeled-file", str(texts["sw"]),
                            "--output-dir", str(tmp_path / "own-adapted"), "--set", "adapt_mix_source=16",
                            *common]) == 0
    student = load_model(tmp_path / "own-adapted")
    assert [student.config.id2label[i] for i in range(len(OWN))] == OWN
    results = json.loads((tmp_path / "own-adapted" / "results.json").read_text())
    source = results["adaptation"]["source"]
    assert source["train_file"] == str(tmp_path / "train.conll") and source["mixed_sentences"] == 16
    assert results["config"]["train_sentences"] == SW_LINES + 16  # every line of sw.txt (under the cap) + 16
    assert results["config"]["validation_sentences"] == 8


# -- resuming after a kill (slow) -----------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_adaptation_resumes_to_the_uninterrupted_weights(teacher, texts, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    common = ("--epochs", "2", "--save-steps", "1")

    def cli(out, *extra):
        command = [sys.executable, str(ROOT / "train_loop.py"), *adapt_args(teacher, texts, out, *common, *extra)]
        return subprocess.run(command, env=env, capture_output=True, text=True)

    assert cli(tmp_path / "a").returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_loop.py"), *adapt_args(teacher, texts, tmp_path / "b",
                                                                                     *common)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file, deadline, state = tmp_path / "b" / "last" / "state.json", time.time() + 300, None
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["epoch"] == 0 and state["batch"] >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = cli(tmp_path / "b", "--resume", str(tmp_path / "b"))
    assert resumed.returncode == 0, resumed.stderr
    assert "reusing the teacher's tags" in resumed.stdout
    a, b = (load_file(tmp_path / x / "model.safetensors") for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    assert [e["val_f1"] for e in ra["epochs"]] == [e["val_f1"] for e in rb["epochs"]]
    assert not math.isnan(rb["test_f1"]["de"])
