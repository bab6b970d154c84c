"""`eval.py tag --input --output`: a corpus tagged line by line as the tagger tags each text, the
same output after a SIGKILL and a rerun (a half-written line included) and from two torchrun
processes, a rerun with other tagging settings refused, and bad lines named by file:line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny import SENTENCES, confident_checkpoint
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_killed_and_rerun_writes_the_same_output(uninterrupted, model_dir, corpus, tmp_path):
    """The same command, killed and run again: the uninterrupted run's bytes. Each chunk is tagged
    whole in one run, in the same batches whichever run it is (a rerun with another batch size
    is refused, below), so this holds in every precision: a score's 6th decimal can move with
    the batch's make-up, in fp32 as in bf16."""
    out = tmp_path / "tagged.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *tag_command(model_dir, corpus, out)], env=env,
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


@pytest.mark.slow
def test_two_torchrun_processes_write_the_same_output(uninterrupted, model_dir, corpus, tmp_path):
    out = tmp_path / "tagged.jsonl"
    r = run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
             *tag_command(model_dir, corpus, out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.read_bytes() == uninterrupted.read_bytes()


def test_a_rerun_with_other_tagging_settings_is_refused(model_dir, tmp_path):
    """A run stopped after two chunks (by a bad line) continues only with the settings it began
    with: another batch size or precision would tag the remaining chunks in other batches."""
    import torch

    from evaluation.corpus import CorpusError, tag_corpus

    model, tokenizer = load_model(model_dir), XLMRTokenizer(model_dir)
    lines = [json.dumps({"text": s}) for s in SENTENCES * 4]  # 24 lines: 3 chunks of 8
    corpus, out = tmp_path / "corpus.jsonl", tmp_path / "out.jsonl"
    corpus.write_text("\n".join(lines[:19] + ['{"txt": "no text"}'] + lines[20:]) + "\n", encoding="utf-8")

    def tag(batch_size=16, amp_dtype=None):
        tagger = Tagger(model, tokenizer, amp_dtype=amp_dtype, batch_size=batch_size)
        return tag_corpus(tagger, corpus, out, chunk_lines=8, progress=False)

    with pytest.raises(CorpusError, match=":20: expected an object"):
        tag()
    assert len(out.read_text(encoding="utf-8").splitlines()) == 16
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="batch_size 16 there, 4 here"):
        tag(batch_size=4)
    with pytest.raises(CorpusError, match="precision 'float32' there, 'bfloat16' here"):
        tag(amp_dtype=torch.bfloat16)
    assert tag()["written"] == 24 and not out.with_name(out.name + ".parts").exists()
    assert [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()] == SENTENCES * 4


def test_a_bad_line_is_named(model_dir, tmp_path, capsys):
    import eval as ev

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "Jeff Dean", "id": "a"}\n{"txt": "no text"}\n', encoding="utf-8")
    assert ev.main(tag_command(model_dir, corpus, tmp_path / "out.jsonl")[1:]) == 1
    assert f"{corpus}:2: expected an object with a 'text' string" in capsys.readouterr().err
