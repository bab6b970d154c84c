"""`eval.py tag --input --output`: a corpus tagged line by line as the tagger tags each text, the
same output after a SIGKILL and a rerun (a half-written line included) and from two torchrun
processes, and bad lines named by file:line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny import confident_checkpoint
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(spm_path, tmp_path_factory) -> Path:
    return confident_checkpoint(tmp_path_factory.mktemp("corpus-model"), spm_path)


@pytest.fixture(scope="module")
def corpus(panx_dir, tmp_path_factory) -> Path:
    """801 lines: German test sentences (each line once), an empty line among them."""
    text = (panx_dir / "test-de.tsv").read_text(encoding="utf-8")
    sentences = [" ".join(line.split("\t")[0] for line in block.splitlines())
                 for block in text.split("\n\n")[:800] if block.strip()]
    sentences.insert(7, "")
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return path


def tag_command(model_dir, corpus, output, *extra):
    return [str(ROOT / "eval.py"), "tag", "--model", str(model_dir), "--amp", "off", "--input", str(corpus),
            "--output", str(output), "--chunk-lines", "16", *extra]


def run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def uninterrupted(model_dir, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "tagged.jsonl"
    r = run(tag_command(model_dir, corpus, out))
    assert r.returncode == 0, r.stderr
    assert not out.with_name(out.name + ".parts").exists()  # cleaned up once complete
    return out


def test_every_line_as_the_tagger_tags_it(uninterrupted, corpus, model_dir):
    texts = corpus.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in uninterrupted.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == list(range(1, len(texts) + 1))
    assert [r["text"] for r in records] == texts
    tagger = Tagger(load_model(model_dir), XLMRTokenizer(model_dir))
    for r in records[::41] + [records[7]]:
        expected = [(e.type, e.text, e.start, e.end, pytest.approx(e.score, abs=1e-5))
                    for e in tagger(r["text"]).entities]
        assert [(e["entity_group"], e["word"], e["start"], e["end"], e["score"]) for e in r["entities"]] == expected
    assert records[7]["entities"] == []
    assert sum(len(r["entities"]) for r in records) > 40


def test_killed_and_rerun_writes_the_same_output(uninterrupted, model_dir, corpus, tmp_path):
    out = tmp_path / "tagged.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *tag_command(model_dir, corpus, out, "--batch-size", "4")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out.is_file() and out.stat().st_size > 10_000):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(out.read_bytes().splitlines()) < 801
    with open(out, "a", encoding="utf-8") as f:  # as if killed in the middle of an append
        f.write('{"line": 99999, "text": "half a li')
    r = run(tag_command(model_dir, corpus, out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == uninterrupted.read_bytes()


def test_two_torchrun_processes_write_the_same_output(uninterrupted, model_dir, corpus, tmp_path):
    out = tmp_path / "tagged.jsonl"
    r = run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
             *tag_command(model_dir, corpus, out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.read_bytes() == uninterrupted.read_bytes()


def test_a_bad_line_is_named(model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "Jeff Dean", "id": "a"}\n{"txt": "no text"}\n', encoding="utf-8")
    r = run(tag_command(model_dir, corpus, tmp_path / "out.jsonl"))
    assert r.returncode == 1
    assert f"{corpus}:2: expected an object with a 'text' string" in r.stderr
