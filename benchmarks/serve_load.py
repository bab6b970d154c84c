"""Load on the tagging service, on this machine only (127.0.0.1), bounded in requests and time.

    python -m benchmarks.serve_load --model runs/de [--concurrency 1 8 32] [--requests 256] [--max-seconds 60]
    python -m benchmarks.serve_load --model runs/de --overload     # past capacity: see serve_overload.py

For batching on and then off, the service runs in this process on an ephemeral loopback port and
`c` client threads send one sentence per request until the level's request count or time limit
is reached. Reported per level: requests/s, sentences/s, p50/p95/p99 latency and failed requests;
and, as the reference for latency, a direct `Tagger` call on the same sentences, one at a time.
Writes a Markdown table and JSON beside --output (default runs/serve_load.{md,json}).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.provenance import provenance, write_result
from benchmarks.serve_overload import markdown as overload_markdown
from benchmarks.serve_overload import overload, percentiles, run_threads
from serving.server import Running, build_service

SENTENCES = [
    "Jeff Dean ist ein Informatiker bei Google in Kalifornien",
    "Jeff Dean est informaticien chez Google en Californie",
    "Jeff Dean è un informatico di Google in California",
    "Jeff Dean is a computer scientist at Google in California",
    "Angela Merkel besuchte Paris und traf Emmanuel Macron",
    "Il Colosseo si trova a Roma in Italia",
    "Barack Obama was born in Hawaii and worked in Chicago",
    "Lionel Messi joue pour Inter Miami aux États-Unis",
]


def load_level(url: str, concurrency: int, requests: int, max_seconds: float) -> dict:
    """`concurrency` threads send requests until `requests` are done or `max_seconds` pass."""
    latencies, failures, lock = [], [], threading.Lock()
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds

    def client():
        while time.perf_counter() < deadline:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            body = json.dumps({"text": SENTENCES[k % len(SENTENCES)]}).encode()
            request = urllib.request.Request(url + "/api/tag", data=body, headers={"Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as r:
                    ok = r.status == 200 and "entities" in json.loads(r.read())
            except (urllib.error.URLError, OSError, ValueError):
                ok = False
            with lock:
                (latencies if ok else failures).append(time.perf_counter() - t0)

    seconds = run_threads(client, concurrency)
    return {"concurrency": concurrency, "requests": len(latencies), "failed": len(failures), "seconds": seconds,
            "requests_per_s": len(latencies) / seconds, "sentences_per_s": len(latencies) / seconds,
            **percentiles(latencies)}


def direct_latency(service, n: int) -> dict:
    tagger = service.batcher.tagger
    tagger(SENTENCES[0])  # warm-up
    latencies = []
    for k in range(n):
        t0 = time.perf_counter()
        tagger(SENTENCES[k % len(SENTENCES)])
        latencies.append(time.perf_counter() - t0)
    return {"calls": n, **percentiles(latencies)}


def markdown(report: dict) -> str:
    d = report["direct"]
    lines = [f"Direct Tagger call, one sentence: p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms", "",
             "| batching | concurrency | requests | failed | requests/s | sentences/s | p50 ms | p95 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode in ("on", "off"):
        for r in report[mode]:
            lines.append(f"| {mode} | {r['concurrency']} | {r['requests']} | {r['failed']} | {r['requests_per_s']:.1f} "
                         f"| {r['sentences_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=256, help="requests per level, at most")
    p.add_argument("--max-seconds", type=float, default=60, help="time per level, at most")
    p.add_argument("--amp", default="auto")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=0.0)
    p.add_argument("--decode", default="viterbi", choices=["viterbi", "argmax"])
    p.add_argument("--output", default="runs/serve_load", help="path stem for .md and .json")
    p.add_argument("--overload", action="store_true",
                   help="instead: capacity, a burst and a storm past it (benchmarks/serve_overload.py)")
    p.add_argument("--factor", type=float, default=4.0, help="--overload: the storm's rate over capacity")
    p.add_argument("--storm-seconds", type=float, default=60)
    p.add_argument("--capacity-seconds", type=float, default=20, help="--overload: how long capacity is measured")
    p.add_argument("--burst", type=int, default=200, help="--overload: clients sending at once")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    record = provenance(__file__, sys.argv[1:] if argv is None else argv)
    if args.overload:
        return run_overload(args, record)
    report = {"model": args.model}
    for mode in ("on", "off"):
        service = build_service(args.model, amp=args.amp, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                batching=mode == "on", decode=args.decode)
        if "direct" not in report:
            report["direct"] = direct_latency(service, 100)
            report["precision"] = service.info["precision"]
        with Running(service) as url:
            load_level(url, 1, 8, 30)  # warm-up
            report[mode] = []
            for c in args.concurrency:
                r = load_level(url, c, args.requests, args.max_seconds)
                print(f"batching {mode}, concurrency {c}: {r['requests_per_s']:.1f} requests/s, "
                      f"p99 {r.get('p99_ms', float('nan')):.1f} ms, {r['failed']} failed", flush=True)
                report[mode].append(r)
    write_result(Path(args.output + ".json"), report, record, markdown(report))
    print("\n" + markdown(report))
    return 0


def run_overload(args, record: dict) -> int:
    report = overload(args.model, args.amp, args.factor, args.storm_seconds, args.capacity_seconds,
                      burst_clients=args.burst, server_args=["--max-batch", str(args.max_batch)])
    write_result(Path(args.output + "-overload.json"), report, record, overload_markdown(report))
    print("\n" + overload_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
