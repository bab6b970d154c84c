"""Corpus tagging throughput: `eval.py tag --input --output` on N sentences, one process and
`torchrun --nproc_per_node P`, and whether the outputs are the same file.

    python -m benchmarks.tag_corpus --model runs/de --data-dir ../shared/data/panx-xtreme \
        --sentences 100000 --procs 1 2 --output-dir runs/tag-corpus

The corpus: PAN-X sentences (tokens joined by spaces) from the test-<lang>.tsv files of
--data-dir, languages in turn, until N lines. Each run starts from an empty output; its wall
time covers everything a user waits for (start-up, model load, tagging, writing).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.provenance import ROOT, provenance, write_result


def write_corpus(data_dir: Path, n: int, path: Path) -> int:
    files = sorted(data_dir.glob("test-*.tsv"))
    if not files:
        raise SystemExit(f"no test-*.tsv in {data_dir}")
    readers = [iter(f.read_text(encoding="utf-8").split("\n\n")) for f in files]
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < n and readers:
            for reader in list(readers):
                block = next(reader, None)
                if block is None:
                    readers.remove(reader)
                    continue
                words = [line.split("\t")[0].split(":", 1)[-1] for line in block.splitlines() if line.strip()]
                if words:
                    out.write(" ".join(words) + "\n")
                    written += 1
                if written == n:
                    break
    return written


def run(model: str, corpus: Path, output: Path, procs: int, extra: list[str]) -> float:
    command = [str(ROOT / "eval.py"), "tag", "--model", model, "--input", str(corpus), "--output", str(output), *extra]
    if procs > 1:
        command = ["-m", "torch.distributed.run", "--nproc_per_node", str(procs), *command]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *command], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--sentences", type=int, default=100_000)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--output-dir", type=Path, default=Path("runs/tag-corpus"))
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more eval.py tag flags, e.g. --quantize int8")
    args = p.parse_args(argv)
    record = provenance(__file__, sys.argv[1:] if argv is None else argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    corpus = args.output_dir / "corpus.txt"
    n = write_corpus(args.data_dir, args.sentences, corpus)
    rows = []
    for procs in args.procs:
        output = args.output_dir / f"tagged-{procs}.jsonl"
        output.unlink(missing_ok=True)
        seconds = run(args.model, corpus, output, procs, args.extra)
        rows.append({"processes": procs, "seconds": seconds, "texts_per_s": n / seconds})
        print(f"{procs} process(es): {n} texts in {seconds:.0f} s, {n / seconds:.1f} texts/s", flush=True)
    first = args.output_dir / f"tagged-{args.procs[0]}.jsonl"
    same = all(filecmp.cmp(first, args.output_dir / f"tagged-{q}.jsonl", shallow=False) for q in args.procs[1:])
    report = {"sentences": n, "extra": args.extra, "rows": rows, "outputs_identical": same}
    write_result(args.output_dir / "tag_corpus.json", report, record)
    print(f"outputs identical across process counts: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
