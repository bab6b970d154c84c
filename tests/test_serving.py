"""The tagging service over real HTTP on an ephemeral port: answers equal direct Tagger calls,
every class of bad input gets its status and the service stays up, concurrent clients are
batched, and an exported checkpoint gives the same entities in transformers' pipeline."""
from __future__ import annotations

import http.client
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving.api import Limits
from serving.server import Running, build_service
from tests.tiny import SENTENCES, confident_checkpoint, post
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import export_hf, load_model


@pytest.fixture(scope="module")
def model_dir(spm_path, tmp_path_factory) -> Path:
    return confident_checkpoint(tmp_path_factory.mktemp("serve-model"), spm_path)


@pytest.fixture(scope="module")
def direct(model_dir) -> Tagger:
    return Tagger(load_model(model_dir), XLMRTokenizer(model_dir), max_length=32)


@pytest.fixture(scope="module")
def service(model_dir):
    service = build_service(model_dir, amp="off", max_batch=16, max_wait_ms=20,
                            limits=Limits(max_body_bytes=20_000, max_text_chars=5_000, max_texts=8))
    service.batcher.tagger.max_length, service.batcher.tagger.budget = 32, 30  # small windows: long texts split
    service.batcher.tagger.stride = 7
    return service


@pytest.fixture(scope="module")
def url(service):
    with Running(service) as u:
        yield u


def expected(direct, text, aggregation="first"):
    t = direct(text, aggregation=aggregation)
    return [{"entity_group": e.type, "score": pytest.approx(e.score, abs=1e-5), "word": e.text, "start": e.start,
             "end": e.end} for e in t.entities]


def test_health_info_and_page(url):
    with urllib.request.urlopen(url + "/health") as r:
        assert json.loads(r.read()) == {"status": "ok", "queued_texts": 0}
    with urllib.request.urlopen(url + "/api/info") as r:
        info = json.loads(r.read())
    assert info["labels"] == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    assert info["precision"] == "float32" and info["device"] == "cpu" and info["limits"]["max_texts"] == 8
    with urllib.request.urlopen(url + "/") as r:
        assert r.headers["Content-Type"].startswith("text/html") and b'id="output"' in r.read()


@pytest.mark.parametrize("aggregation", ["first", "average", "max"])
def test_answers_equal_direct_tagger_calls(url, direct, aggregation):
    status, body = post(url, {"texts": SENTENCES, "aggregation": aggregation, "tokens": True})
    assert status == 200 and body["aggregation"] == aggregation
    for text, result in zip(SENTENCES, body["results"]):
        assert result["entities"] == expected(direct, text, aggregation)
        assert [t["token"] for t in result["tokens"]] == direct(text).tokens
        assert all(type(e["score"]) is float for e in result["entities"])
    assert any(r["entities"] for r in body["results"])  # the confident head does tag something


def test_long_text_is_tagged_in_windows(url, direct):
    text = " ".join(SENTENCES * 12)  # ~700 tokens, windows of 32
    status, body = post(url, {"text": text})
    assert status == 200 and body["entities"] == expected(direct, text)
    for e in body["entities"]:
        assert text[e["start"]:e["end"]] == e["word"]


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[1, 2]", 422, "valid dictionary"),
    (b"{}", 422, "exactly one of"),
    (b'{"text": "a", "texts": ["b"]}', 422, "exactly one of"),
    (b'{"text": 7}', 422, '"text": Input should be a valid string'),
    (b'{"texts": ["a", 3]}', 422, '"texts.1": Input should be a valid string'),
    (b'{"text": "a", "aggregation": "median"}', 422, "'first', 'average' or 'max'"),
    (b'{"text": "a", "decode": "beam"}', 422, "'viterbi', 'iob2' or 'argmax'"),
    (b'{"text": "a", "tokens": "yes"}', 422, "valid boolean"),
    (b'{"text": "a", "colour": "red"}', 422, "Extra inputs"),
    (json.dumps({"texts": ["a"] * 9}).encode(), 413, "limit is 8"),
    (json.dumps({"text": "a " * 3000}).encode(), 413, "limit is 5000"),
    (json.dumps({"text": "a" * 30000}).encode(), 413, "limit is 20000"),
])
def test_bad_input_gets_its_status_and_the_service_stays_up(url, body, status, message):
    got, answer = post(url, body, raw=True)
    assert got == status and message in answer["error"]
    with urllib.request.urlopen(url + "/health") as r:
        assert r.status == 200


def test_empty_text_unknown_route_and_method(url):
    assert post(url, {"text": ""}) [1]["entities"] == []
    assert post(url, {"text": "   \n\t"})[1]["entities"] == []
    status, body = post(url, {"texts": []})
    assert status == 200 and body == {"results": [], "latency_ms": body["latency_ms"], "aggregation": "first",
                                      "decode": "viterbi"}
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("GET", "/api/tag")
    r = conn.getresponse()
    assert r.status == 405 and r.getheader("allow") == "POST" and "takes POST" in json.loads(r.read())["error"]
    conn.request("GET", "/nowhere")
    r = conn.getresponse()
    assert r.status == 404 and "no route" in json.loads(r.read())["error"]


def test_latency_is_the_time_the_request_took_to_tag(url, direct):
    """latency_ms: at least the tagging itself (timed here on the same texts, best of three) and
    at most what the client waited from sending to the last byte of the answer."""
    tagging = []
    for _ in range(3):
        t0 = time.perf_counter()
        direct(SENTENCES)
        tagging.append((time.perf_counter() - t0) * 1000)
    for body in ({"texts": SENTENCES}, {"texts": []}):
        t0 = time.perf_counter()
        status, answer = post(url, body)
        waited = (time.perf_counter() - t0) * 1000
        floor = 0.5 * min(tagging) if body["texts"] else 0.0  # a half: the service's run may be quicker
        assert status == 200 and floor < answer["latency_ms"] <= waited, (answer["latency_ms"], floor, waited)


def test_concurrent_clients_are_batched_and_answered_right(url, direct, service):
    texts = [f"{s} {i}" for i in range(4) for s in SENTENCES]  # 24 distinct texts, one per request
    sizes, tagger = [], service.batcher.tagger
    service.batcher.tagger = lambda batch, *options: sizes.append(len(batch)) or tagger(batch, *options)
    try:
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda t: post(url, {"text": t}), texts))
    finally:
        service.batcher.tagger = tagger
    # Every text went through the model once, in forward batches of several requests, none over
    # the service's max_batch of 16.
    assert sum(sizes) == len(texts) and max(sizes) <= 16, sizes
    assert len(sizes) <= len(texts) // 4 and max(sizes) >= 4, sizes
    for text, (status, body) in zip(texts, answers):
        assert status == 200 and body["entities"] == expected(direct, text)


@pytest.mark.slow
def test_exported_checkpoint_matches_in_transformers_pipeline(model_dir, direct, tmp_path):
    from transformers import AutoTokenizer, pipeline

    export_hf(load_model(model_dir), tmp_path / "hf", tokenizer_file=model_dir / "sentencepiece.bpe.model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours = XLMRTokenizer(model_dir)
    for text in SENTENCES:
        assert tok(text)["input_ids"] == ours.encode(text)
    ner = pipeline("ner", model=str(tmp_path / "hf"), aggregation_strategy="first", device=-1)
    # The pipeline reads each word from its first piece, as the book's alignment does.
    book = Tagger(direct.model, direct.tokenizer, max_length=32, unspaced="words")
    found = 0
    for text in SENTENCES:
        # The pipeline joins a multi-word entity's tokens without their spaces ("undtraf") when its
        # tokenizer has no word ids; the offsets are exact, so its words are compared space-free.
        theirs = [{"entity_group": e["entity_group"], "word": e["word"].replace(" ", ""), "start": e["start"],
                   "end": e["end"], "score": pytest.approx(float(e["score"]), abs=1e-4)} for e in ner(text)]
        # The pipeline takes each word's argmax: our argmax decoding is its counterpart.
        mine = [{"entity_group": e.type, "word": e.text.replace(" ", ""), "start": e.start, "end": e.end, "score": e.score}
                for e in book(text, decode="argmax").entities]
        assert mine == theirs, text
        found += len(mine)
    assert found > 0
