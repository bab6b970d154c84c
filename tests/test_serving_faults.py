"""The service under faults, over real HTTP: a full queue sheds load with 503 + Retry-After
while /health stays quick, a request past its deadline gets a 503, a model error is a JSON 500,
a 6 MB body sent with urllib receives its 413, an API key guards /api/tag, the OpenAPI schema
describes the API, and SIGTERM lets the request in flight finish before the process exits 0."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import eval as ev
from serving.api import Limits
from serving.batcher import Batcher
from serving.server import Running, Service, check_exposure
from tests.tiny import confident_checkpoint
from xlmr.entities import Entity
from xlmr.tagger import Tagged

ROOT = Path(__file__).resolve().parents[1]


class SlowTagger:
    """Takes `seconds` per batch and finds one entity per text; or fails, if asked to."""

    def __init__(self, seconds: float = 0.0, fail: bool = False):
        self.seconds, self.fail, self.calls = seconds, fail, 0

    def __call__(self, texts, aggregation="first", decode="viterbi"):
        self.calls += 1
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("CUDA out of memory (pretend)")
        return [Tagged(t, [(0, len(t))], ["B-LOC"], [0.9], entities=[Entity("LOC", t, 0, len(t), 0.9, (0, 0))])
                for t in texts]


def stub_service(tagger, **batcher_args) -> Service:
    return Service(Batcher(tagger, **batcher_args), {"model": "stub", "decode": "viterbi"}, Limits())


def post(url, body: bytes, headers=None, timeout=30):
    request = urllib.request.Request(url + "/api/tag", data=body,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_a_full_queue_sheds_load_and_health_stays_quick():
    # 40 clients x 4 texts against a model that takes 0.3 s a batch of 8 and a queue of 16 texts.
    service = stub_service(SlowTagger(0.3), max_texts=8, max_queued_texts=16, deadline_s=5)
    health = []
    with Running(service) as url:
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                t0 = time.perf_counter()
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    assert r.status == 200
                health.append(time.perf_counter() - t0)
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        body = json.dumps({"texts": ["Berlin"] * 4}).encode()

        def client(_):
            t0 = time.perf_counter()
            status, headers, answer = post(url, body)
            return status, headers, answer, time.perf_counter() - t0

        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(client, range(40)))
        stop.set()
        poller.join()
    statuses = [a[0] for a in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 4 and statuses.count(503) >= 10
    for status, headers, answer, seconds in answers:
        if status == 503:
            assert int(headers["retry-after"]) >= 1 and "busy" in answer["error"]
            assert seconds < 1.0  # shed at once, not after waiting
        else:
            assert [r["entities"][0]["word"] for r in answer["results"]] == ["Berlin"] * 4
    assert health and max(health) < 1.0


def test_a_request_past_its_deadline_gets_a_503():
    service = stub_service(SlowTagger(1.5), max_texts=1, deadline_s=0.5)
    with Running(service) as url:
        status, headers, answer = post(url, b'{"text": "Paris"}')
    assert status == 503 and "deadline" in answer["error"] and headers["retry-after"] == "1"


def test_a_model_error_is_a_json_500_and_the_service_stays_up():
    tagger = SlowTagger(fail=True)
    with Running(stub_service(tagger)) as url:
        status, _, answer = post(url, b'{"text": "Paris"}')
        assert status == 500 and "RuntimeError: CUDA out of memory" in answer["error"]
        tagger.fail = False
        assert post(url, b'{"text": "Paris"}')[0] == 200


def test_a_6mb_body_from_urllib_gets_the_413():
    with Running(stub_service(SlowTagger())) as url:
        status, _, answer = post(url, json.dumps({"text": "a" * 6_000_000}).encode())
        assert status == 413 and "limit is 1000000" in answer["error"]
        # Chunked, without a length: the same limit.
        chunks = iter([b'{"text": "', b"a" * 700_000, b"a" * 700_000, b'"}'])
        request = urllib.request.Request(url + "/api/tag", data=chunks, headers={"Content-Type": "application/json",
                                                                                 "Transfer-Encoding": "chunked"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=30)
        assert e.value.code == 413 and "over 1000000 bytes" in json.loads(e.value.read())["error"]


def test_an_api_key_guards_the_tagging_route():
    service = Service(Batcher(SlowTagger()), {"model": "stub"}, Limits(), api_key="s3cret")
    with Running(service) as url:
        status, headers, answer = post(url, b'{"text": "Paris"}')
        assert status == 401 and headers["www-authenticate"] == "Bearer" and "API key" in answer["error"]
        assert post(url, b'{"text": "Paris"}', {"Authorization": "Bearer wrong"})[0] == 401
        assert post(url, b'{"text": "Paris"}', {"Authorization": "Bearer s3cret"})[0] == 200
        with urllib.request.urlopen(url + "/health") as r:
            assert r.status == 200  # health needs no key


def test_binding_beyond_loopback_needs_a_key_or_no_auth(tmp_path, capsys):
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", "key", False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(RuntimeError, match="--api-key"):
        check_exposure("0.0.0.0", None, False)
    # The command line refuses before it loads anything.
    assert ev.main(["serve", "--model", str(tmp_path / "absent"), "--host", "0.0.0.0"]) == 1
    assert "exposes the service beyond this machine" in capsys.readouterr().err


def test_openapi_describes_the_tagging_route():
    with Running(stub_service(SlowTagger())) as url:
        with urllib.request.urlopen(url + "/openapi.json") as r:
            spec = json.loads(r.read())
        with urllib.request.urlopen(url + "/docs") as r:
            assert b"swagger" in r.read().lower()
    route = spec["paths"]["/api/tag"]["post"]
    request_schema = route["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert set(spec["components"]["schemas"][request_schema]["properties"]) == {
        "text", "texts", "aggregation", "decode", "tokens"}
    ok = json.dumps(route["responses"]["200"])
    assert "TagResponse" in ok and "TagsResponse" in ok
    assert {"entity_group", "score", "word", "start", "end"} == set(spec["components"]["schemas"]["Entity"]["properties"])
    assert "503" in route["responses"] and "413" in route["responses"]


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_then_exits_0(spm_path, tmp_path):
    model = confident_checkpoint(tmp_path / "model", spm_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "eval.py"), "serve", "--model", str(model), "--amp", "off",
                             "--port", str(port), "--max-batch", "64", "--deadline", "100"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "slow"
                time.sleep(0.2)
        # Long enough to be in flight when the signal comes: 32 texts of ~2,000 characters.
        body = json.dumps({"texts": ["Angela Merkel besuchte Paris und traf Emmanuel Macron. " * 36] * 32}).encode()
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post, url, body, None, 120)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            status, _, result = answer.result()
        assert status == 200 and len(result["results"]) == 32, result
        assert proc.wait(timeout=60) == 0
        with pytest.raises(OSError):  # and it no longer accepts
            urllib.request.urlopen(url + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
