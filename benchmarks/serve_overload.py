"""The tagging service past its capacity, on this machine only (127.0.0.1), bounded in time.

    python -m benchmarks.serve_load --model runs/de --overload [--storm-seconds 60] [--factor 4]

The service runs as its own process (`eval.py serve`), so its memory is its own. Each request
carries 32 long German sentences. Three phases:
1. capacity: 8 clients send requests back to back for `--capacity-seconds`; requests/s measured;
2. burst: `--burst` clients (200) send one request each, all at once;
3. storm: requests arrive at `--factor` (4) x capacity for `--storm-seconds` (60), each on its
   own thread (at most 1,024 in flight), whatever the answers.
Throughout, a poller times GET /health every 0.25 s and a sampler reads the server's resident
memory. Reported for the burst and the storm: accepted (200) and shed (503) requests with their
p50/p99 latency, other statuses, connection errors, /health latency, peak RSS.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.provenance import ROOT
LONG_GERMAN = [
    "Angela Merkel besuchte am Montag gemeinsam mit dem französischen Präsidenten Emmanuel Macron die Ausstellung "
    "im Deutschen Historischen Museum in Berlin , bevor beide nach Straßburg weiterreisten .",
    "Der Fußballverein Borussia Dortmund verpflichtete im Sommer den norwegischen Stürmer Erling Haaland , der zuvor "
    "für Red Bull Salzburg in der österreichischen Bundesliga gespielt hatte .",
    "Die Technische Universität München und die Max-Planck-Gesellschaft gründeten in Garching ein gemeinsames "
    "Institut , das von der Europäischen Union mit mehreren Millionen Euro gefördert wird .",
    "Nach seinem Studium in Heidelberg arbeitete Karl Schmidt als Ingenieur bei Siemens in Erlangen und später bei "
    "der Deutschen Bahn in Frankfurt am Main .",
]
REQUEST_TEXTS = [LONG_GERMAN[i % len(LONG_GERMAN)] for i in range(32)]


def percentiles(seconds: list[float], qs=(50, 95, 99)) -> dict:
    """{"p50_ms": ..., ...} of latencies given in seconds; {} for none."""
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in qs} if len(ms) else {}


def _post(url: str, timeout: float = 60) -> tuple[str, float]:
    """('200' / '503' / other status / 'connection error', seconds)."""
    body = json.dumps({"texts": REQUEST_TEXTS}).encode()
    request = urllib.request.Request(url + "/api/tag", data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            r.read()
            outcome = str(r.status)
    except urllib.error.HTTPError as e:
        e.read()
        outcome = str(e.code)
    except (urllib.error.URLError, OSError):
        outcome = "connection error"
    return outcome, time.perf_counter() - t0


class Watch:
    """/health latency and the server's resident memory, sampled in the background."""

    def __init__(self, url: str, pid: int):
        self.url, self.pid, self.health, self.rss_mb, self.health_errors = url, pid, [], [], 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._health), threading.Thread(target=self._memory)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def _health(self):
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=10) as r:
                    r.read()
                self.health.append(time.perf_counter() - t0)
            except OSError:
                self.health_errors += 1
            self.stop.wait(0.25)

    def _memory(self):
        while not self.stop.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                self.rss_mb.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
            except (OSError, IndexError):
                pass
            self.stop.wait(0.5)

    def summary(self) -> dict:
        p = percentiles(self.health, (50, 99))
        return {"health_checks": len(self.health), "health_errors": self.health_errors,
                "health_p50_ms": p.get("p50_ms"), "health_p99_ms": p.get("p99_ms"),
                "health_max_ms": max(self.health) * 1000 if self.health else None,
                "peak_rss_mb": max(self.rss_mb, default=None)}


def outcomes(results: list[tuple[str, float]], seconds: float) -> dict:
    def stats(status):
        seconds = [t for s, t in results if s == status]
        return {"count": len(seconds), **percentiles(seconds, (50, 99)),
                **({"max_ms": max(seconds) * 1000} if seconds else {})}
    others = sorted({s for s, _ in results} - {"200", "503", "connection error"})
    return {"requests": len(results), "seconds": seconds, "accepted": stats("200"), "shed": stats("503"),
            "connection_errors": sum(s == "connection error" for s, _ in results),
            "other": {s: sum(x == s for x, _ in results) for s in others}}


def run_threads(target, n: int) -> float:
    """Seconds until `n` threads running `target` have all finished."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def capacity(url: str, seconds: float, clients: int = 8) -> float:
    """Requests/s with `clients` sending back to back (all answered 200 at this load)."""
    done, lock, deadline = [], threading.Lock(), time.perf_counter() + seconds

    def client():
        while time.perf_counter() < deadline:
            outcome, _ = _post(url)
            with lock:
                done.append(outcome)

    seconds = run_threads(client, clients)
    return sum(o == "200" for o in done) / seconds


def burst(url: str, clients: int) -> dict:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: _post(url), range(clients)))
    return outcomes(results, time.perf_counter() - t0)


def storm(url: str, rate: float, seconds: float, max_in_flight: int = 1024) -> dict:
    """Open-loop arrivals at `rate` per second: a request is sent on schedule whether or not
    the earlier ones were answered."""
    results, lock = [], threading.Lock()
    in_flight = threading.BoundedSemaphore(max_in_flight)

    def one():
        try:
            r = _post(url)
            with lock:
                results.append(r)
        finally:
            in_flight.release()

    t0, threads, k = time.perf_counter(), [], 0
    while (now := time.perf_counter()) < t0 + seconds:
        if now >= t0 + k / rate:
            in_flight.acquire()
            thread = threading.Thread(target=one)
            thread.start()
            threads.append(thread)
            k += 1
        else:
            time.sleep(min(0.005, t0 + k / rate - now))
    for t in threads:
        t.join()
    return outcomes(results, time.perf_counter() - t0) | {"offered_per_s": rate, "sent": k}


def start_server(model: str, amp: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "eval.py"), "serve", "--model", model, "--amp", amp,
                             "--port", str(port), *extra], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 300
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).close()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the service did not start") from None
            time.sleep(0.3)


def overload(model: str, amp: str = "auto", factor: float = 4.0, storm_seconds: float = 60,
             capacity_seconds: float = 20, burst_clients: int = 200, server_args=()) -> dict:
    proc, url = start_server(model, amp, list(server_args))
    try:
        _post(url)  # warm-up
        with urllib.request.urlopen(url + "/api/info") as r:
            info = json.loads(r.read())
        report = {"model": Path(model).name, "precision": info["precision"], "batching": info["batching"],
                  "texts_per_request": len(REQUEST_TEXTS)}
        report["capacity_per_s"] = capacity(url, capacity_seconds)
        print(f"capacity: {report['capacity_per_s']:.2f} requests/s of {len(REQUEST_TEXTS)} sentences", flush=True)
        with Watch(url, proc.pid) as watch:
            report["burst"] = burst(url, burst_clients)
        report["burst"] |= watch.summary()
        print(f"burst of {burst_clients}: {json.dumps(report['burst'])}", flush=True)
        with Watch(url, proc.pid) as watch:
            report["storm"] = storm(url, factor * report["capacity_per_s"], storm_seconds)
        report["storm"] |= watch.summary()
        print(f"storm at {factor}x: {json.dumps(report['storm'])}", flush=True)
    finally:
        proc.terminate()
        report["exit_code"] = proc.wait(timeout=120)
    return report


def markdown(report: dict) -> str:
    def row(name, r):
        a, s = r["accepted"], r["shed"]
        cell = lambda d, k: f"{d[k]:.0f}" if k in d else "-"  # noqa: E731
        return (f"| {name} | {r['requests']} | {a['count']} | {cell(a, 'p50_ms')} | {cell(a, 'p99_ms')} | {s['count']} "
                f"| {cell(s, 'p50_ms')} | {cell(s, 'p99_ms')} | {r['connection_errors']} | {r['health_max_ms']:.0f} "
                f"| {r['peak_rss_mb']:.0f} |")
    lines = [f"Capacity {report['capacity_per_s']:.2f} requests/s of {report['texts_per_request']} sentences "
             f"({report['precision']}); queue {report['batching']['max_queued_texts']} texts, deadline "
             f"{report['batching']['deadline_s']:g} s; server exit code after SIGTERM: {report['exit_code']}.", "",
             "| phase | requests | accepted | p50 ms | p99 ms | shed (503) | p50 ms | p99 ms | connection errors "
             "| /health max ms | peak RSS MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             row(f"burst of {report['burst']['requests']} at once", report["burst"]),
             row(f"{report['storm']['offered_per_s']:.1f} requests/s for {report['storm']['seconds']:.0f} s",
                 report["storm"])]
    return "\n".join(lines) + "\n"
