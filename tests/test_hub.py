"""The path of a user with internet access, against a stand-in Hub on 127.0.0.1 (tests/hub_server.py):
the default `train_loop.py --langs de`, the Swiss mix read from google/xtreme's Parquet files,
one weights file downloaded, and the errors of an unknown repo, a gated one and no network.

Each case runs in a fresh process, as a user's does: `huggingface_hub` and `datasets` read
HF_ENDPOINT and HF_HOME when they are imported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.hub_server import PANX_TAGS, ROOT, closed_port_url

# The book's Swiss mix: train sentences per language (de 62.9%, fr 22.9%, it 8.4%, en 5.9% of 20,000).
BOOK_TRAIN_SIZES = {"de": 12580, "fr": 4580, "it": 1680, "en": 1180}
MODEL_FILES = {"config.json", "model.safetensors", "sentencepiece.bpe.model"}  # of the stand-in xlm-roberta-base's 13


def python(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def script(env, code: str) -> dict:
    """Run `code` in a fresh process; it prints one JSON object as its last line."""
    r = python(env, "-c", code)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def sizes(hub, repo: str) -> dict[str, int]:
    return {path: len(data) for path, data in hub.repos[("model", repo)].files.items()}


def test_the_default_training_run_takes_model_and_data_from_the_hub(stand_in_hub, hub_repos, tmp_path):
    """`python train_loop.py --langs de`, no --model, no --data-dir: xlm-roberta-base (here the
    tiny model under that id) and PAN-X from google/xtreme, the Swiss mix of its first 400
    sentences per split, one epoch."""
    stand_in_hub.add("dataset", "google/xtreme", hub_repos["xtreme-head"])
    out = tmp_path / "run"
    r = python(stand_in_hub.env(tmp_path / "home"), "train_loop.py", "--langs", "de", "--epochs", "1",
               "--output-dir", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model"] == "xlm-roberta-base" and results["config"]["data_dir"] is None
    assert results["config"]["train_sentences"] == int(0.629 * 400)
    assert results["config"]["validation_sentences"] == int(0.629 * 400)
    assert sorted(results["test_f1"]) == ["de", "en", "fr", "it"]
    # The model: one copy of the weights, and nothing else but config and tokenizer.
    assert stand_in_hub.bytes_served("xlm-roberta-base") == {f: sizes(stand_in_hub, "xlm-roberta-base")[f]
                                                             for f in MODEL_FILES}
    # The data: each language's three Parquet files (and the card).
    served = stand_in_hub.bytes_served("google/xtreme")
    assert {p for p in served if p.endswith(".parquet")} == {
        f"PAN-X.{lang}/{split}-00000-of-00001.parquet" for lang in BOOK_TRAIN_SIZES
        for split in ("train", "validation", "test")}
    assert stand_in_hub.unknown == []
    # The trained checkpoint starts from the Hub's weights: its encoder is the tiny model's, moved
    # by one epoch, and it has PAN-X's seven labels.
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(7)] == list(PANX_TAGS)
    trained = load_file(out / "model.safetensors")["encoder.embeddings.position.weight"]
    start = load_file(hub_repos["model"]["model.safetensors"])["roberta.embeddings.position_embeddings.weight"]
    assert trained.shape == start.shape and 0 < (trained - start).abs().max() < 0.05


def test_the_swiss_mix_from_the_hub_has_the_books_sizes_and_sentences(stand_in_hub, hub_repos, panx_dir, tmp_path):
    from loaders.panx import swiss_corpus

    stand_in_hub.add("dataset", "google/xtreme", hub_repos["xtreme"])
    dump = tmp_path / "corpus.json"
    features = script(stand_in_hub.env(tmp_path / "home"), f"""
import json
from loaders.panx import swiss_corpus
corpus = swiss_corpus()  # no data_dir, no PANX_DATA_DIR: the Hub
json.dump({{lang: {{split: [list(d["tokens"]), list(d["ner_tags"])] for split, d in ds.items()}}
           for lang, ds in corpus.items()}},
          open({str(dump)!r}, "w"))
print(json.dumps({{lang: ds["train"].features["ner_tags"].feature.names for lang, ds in corpus.items()}}))
""")
    assert features == {lang: list(PANX_TAGS) for lang in BOOK_TRAIN_SIZES}
    hub = json.loads(dump.read_text())
    assert {lang: len(hub[lang]["train"][0]) for lang in hub} == BOOK_TRAIN_SIZES
    assert {lang: len(hub[lang]["test"][0]) for lang in hub} == {"de": 6290, "fr": 2290, "it": 840, "en": 590}
    # The same sentences and tags, in the same order, as the mix of the local files.
    local = swiss_corpus(panx_dir)
    for lang, splits in hub.items():
        for split, (tokens, tags) in splits.items():
            assert tokens == list(local[lang][split]["tokens"]), (lang, split)
            assert tags == list(local[lang][split]["ner_tags"]), (lang, split)


def test_pan_x_with_its_tags_in_another_order_is_refused(stand_in_hub, panx_dir, tmp_path):
    """Ids in another order would train every label under another name: a silent wrong answer."""
    from tests.hub_server import xtreme_files

    reordered = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG")
    stand_in_hub.add("dataset", "google/xtreme", xtreme_files(panx_dir, tmp_path / "x", ("de",), first=5, tags=reordered))
    r = python(stand_in_hub.env(tmp_path / "home"), "-m", "loaders.panx", "--langs", "de")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "google/xtreme PAN-X.de on the Hugging Face Hub, split train: expected columns tokens and ner_tags" in r.stderr
    assert "O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC" in r.stderr


def test_a_model_is_downloaded_once_in_one_format_and_then_found_offline(stand_in_hub, hub_repos, tmp_path):
    from xlmr.weights import read_tensors

    home = tmp_path / "home"
    folders = script(stand_in_hub.env(home), """
import json
from xlmr.weights import resolve_folder
print(json.dumps({repo: str(resolve_folder(repo)) for repo in ("xlm-roberta-base", "tiny/bin-only")}))
""")
    # safetensors where the repo has them; pytorch_model.bin only where it has not.
    assert stand_in_hub.bytes_served("xlm-roberta-base") == {f: sizes(stand_in_hub, "xlm-roberta-base")[f]
                                                             for f in MODEL_FILES}
    bin_files = MODEL_FILES - {"model.safetensors"} | {"pytorch_model.bin"}
    assert stand_in_hub.bytes_served("tiny/bin-only") == {f: sizes(stand_in_hub, "tiny/bin-only")[f] for f in bin_files}
    assert stand_in_hub.unknown == []
    # Both folders hold the weights transformers wrote (the pickle also keeps the tied LM decoder).
    written = load_file(hub_repos["model"]["model.safetensors"])
    for repo in ("xlm-roberta-base", "tiny/bin-only"):
        got = read_tensors(Path(folders[repo]))
        assert all(torch.equal(got[k], t) for k, t in written.items()), repo
    # Later, with no network: the downloaded copy, and nothing is fetched again.
    stand_in_hub.served.clear()
    again = script(stand_in_hub.env(home, endpoint=closed_port_url()), """
import json
from xlmr.weights import resolve_folder
print(json.dumps({"folder": str(resolve_folder("xlm-roberta-base"))}))
""")
    assert again["folder"] == folders["xlm-roberta-base"] and not stand_in_hub.served


def test_hub_errors_name_the_repo_and_what_to_pass_instead(stand_in_hub, tmp_path):
    """An unknown model, a gated one, a missing dataset: each says which and what to pass instead."""
    errors = script(stand_in_hub.env(tmp_path / "home"), """
import json
from xlmr.weights import CheckpointError, resolve_folder
from loaders.panx import load_panx
errors = {}
for repo in ("nobody/no-such-model", "tiny/gated"):
    try:
        resolve_folder(repo)
    except CheckpointError as e:
        errors[repo] = str(e)
try:
    load_panx("de")  # this stand-in holds no google/xtreme
except FileNotFoundError as e:
    errors["data"] = str(e)
print(json.dumps(errors))
""")
    assert "no model 'nobody/no-such-model' on the Hugging Face Hub" in errors["nobody/no-such-model"]
    assert "tiny/gated is a gated model" in errors["tiny/gated"] and "HF_TOKEN" in errors["tiny/gated"]
    assert all("pass --model a local checkpoint folder" in errors[r] for r in ("nobody/no-such-model", "tiny/gated"))
    assert "google/xtreme PAN-X.de" in errors["data"] and "Pass --data-dir" in errors["data"]
    assert not stand_in_hub.bytes_served("tiny/gated")


def test_an_unknown_model_stops_the_training_run_with_one_line(stand_in_hub, tmp_path):
    r = python(stand_in_hub.env(tmp_path / "home"), "train_loop.py", "--langs", "de", "--model", "nobody/no-such-model",
               "--output-dir", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 1
    assert r.stderr.startswith("error: no model folder at nobody/no-such-model, and no model 'nobody/no-such-model'")
    assert "pass --model a local checkpoint folder" in r.stderr and "Traceback" not in r.stderr


def test_no_network_names_the_repo_and_what_to_pass_instead(tmp_path):
    """HF_ENDPOINT at a port where nothing listens, and an empty cache: the model is looked up
    first (model_info, which does not retry), so the run stops in seconds."""
    from tests.hub_server import StandInHub

    env = StandInHub().env(tmp_path / "home", endpoint=closed_port_url())
    r = python(env, "train_loop.py", "--langs", "de", "--output-dir", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "error: no model folder at xlm-roberta-base" in r.stderr and "could not be reached" in r.stderr
    assert "pass --model a local checkpoint folder" in r.stderr
    # The data alone, offline (HF_HUB_OFFLINE=1: datasets then does not try the network at all).
    r = python(env | {"HF_HUB_OFFLINE": "1"}, "-m", "loaders.panx", "--langs", "de")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "google/xtreme PAN-X.de: could not be reached" in r.stderr and "Pass --data-dir" in r.stderr


@pytest.mark.slow
def test_no_network_for_the_data_names_the_dataset_and_what_to_pass_instead(tmp_path):
    """PAN-X alone with HF_ENDPOINT at a closed port: huggingface_hub retries the dataset card's
    HEAD five times (1 + 2 + 4 + 8 + 8 s) before datasets gives up, hence -m slow."""
    from tests.hub_server import StandInHub

    r = python(StandInHub().env(tmp_path / "home", endpoint=closed_port_url()), "-m", "loaders.panx", "--langs", "de")
    assert r.returncode == 1 and "Traceback" not in r.stderr.split("error:")[-1]
    assert "google/xtreme PAN-X.de: could not be reached" in r.stderr and "Pass --data-dir" in r.stderr
