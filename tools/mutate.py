"""Mutation testing of the modules whose mistakes give a silently wrong answer: apply one-token
changes (tools/mutants.py) one at a time and check that some test fails.

    python tools/mutate.py xlmr/alignment.py [MODULE ...]   # run (all of TARGETS without names)
    python tools/mutate.py --list xlmr/alignment.py          # the mutants, without running
    python tools/mutate.py --report [--survivors]            # kill rates (and survivors) from the results
                                                             # (equivalent survivors: tools/equivalents.py)
    python tools/mutate.py --again xlmr/alignment.py         # rerun survivors and time-outs (tests added)

Not part of the package or the default test run. How it stays cheap on two cores:
- one parent process imports torch, datasets, transformers, pytest ... once and forks a child
  per mutant; the child drops the project's modules, imports the mutated one through an import
  hook (the file on disk is never touched) and runs pytest in-process;
- a first, traced run records which tests execute each line of the module (lines run by a
  fixture shared across tests count for every test that uses it); a mutant runs only the tests
  that execute its lines, with -x, fastest file first. A mutant no test executes survives
  without running; one on a line run at import runs every mapped test;
- a mutant that survives its tests is run against every other mapped test, in a fresh child (a
  cached object built by one test and used by another would otherwise hide a kill);
- a per-mutant time limit (a minute plus three times the traced run of its tests); going over
  it counts as killed (an endless loop is a detected fault), and `--again` runs it once more.
Results are appended to tools/.results/<module>.jsonl, keyed by the hash of the module and its
test files, so an interrupted pass resumes where it stopped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import equivalents  # noqa: E402
import mutants as mutants_lib  # noqa: E402  (tools/ is not a package)
import runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project from this checkout, before any installed copy
RESULTS = Path(__file__).resolve().parent / ".results"


@dataclass(frozen=True)
class Target:
    tests: tuple[str, ...]  # test files, fastest first
    scopes: tuple[str, ...] | None = None  # only mutate inside these functions ("Class.method")


TARGETS = {  # each module's test files; the small tests/test_mutants_*.py first, as they kill fastest
    "xlmr/alignment.py": Target(("tests/test_mutants_alignment.py", "tests/test_alignment.py", "tests/test_unspaced.py",
                                 "tests/test_align_batching.py", "tests/test_tagger.py")),
    "loaders/align.py": Target(("tests/test_mutants_alignment.py", "tests/test_align_batching.py",
                                "tests/test_unspaced.py")),
    "xlmr/decoding.py": Target(("tests/test_mutants_decoding.py", "tests/test_decoding.py", "tests/test_alignment.py",
                                "tests/test_crf.py")),
    "xlmr/entities.py": Target(("tests/test_mutants_decoding.py", "tests/test_alignment.py", "tests/test_words.py")),
    "evaluation/scoring.py": Target(("tests/test_mutants_scoring.py", "tests/test_eval.py", "tests/test_sweep.py")),
    "loaders/collate.py": Target(("tests/test_mutants_batches.py", "tests/test_align_batching.py")),
    "loaders/batching.py": Target(("tests/test_mutants_batches.py", "tests/test_align_batching.py")),
    "xlmr/tokenizer.py": Target(("tests/test_mutants_tokenizer.py", "tests/test_tokenizer.py", "tests/test_unspaced.py",
                                 "tests/test_alignment.py", "tests/test_align_batching.py", "tests/test_words.py")),
    "xlmr/words.py": Target(("tests/test_mutants_tokenizer.py", "tests/test_words.py")),
    "xlmr/model.py": Target(("tests/test_mutants_loss.py", "tests/test_decoding.py", "tests/test_crf.py"),
                            scopes=("cross_entropy", "XLMRForTokenClassification.loss")),
    "xlmr/crf.py": Target(("tests/test_mutants_loss.py", "tests/test_crf.py")),
}


def existing(tests: tuple[str, ...]) -> list[str]:
    return [t for t in tests if (ROOT / t).is_file()]


def fingerprint(module: str, tests: list[str]) -> str:
    h = hashlib.sha1()
    for path in [module, *tests]:
        h.update(path.encode() + b"\0" + (ROOT / path).read_bytes())
    return h.hexdigest()[:12]


def results_file(module: str) -> Path:
    return RESULTS / (module.replace("/", "_") + ".jsonl")


def read_results(module: str) -> list[dict]:
    path = results_file(module)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latest(module: str) -> dict[int, dict]:
    """The last result of each mutant of the module as it is now (its source unchanged)."""
    source_hash = hashlib.sha1((ROOT / module).read_bytes()).hexdigest()[:12]
    out = {}
    for r in read_results(module):
        if r["source"] == source_hash:
            out[r["index"]] = r
    return out


def first_pass(module: str) -> dict[int, dict]:
    """Each mutant's result against the tests that existed before tests/test_mutants_*.py: its first
    run (a time-out rerun with `--timeouts` under the later, generous limit replacing a time-out),
    a kill by one of those new files counted as a survivor. That pass was made while they were
    being written, listed last in every target (run with -x), so such a kill means every older
    test had passed. A pass from scratch runs them first: --before then means nothing."""
    source_hash = hashlib.sha1((ROOT / module).read_bytes()).hexdigest()[:12]
    out = {}
    for r in read_results(module):
        if r["source"] != source_hash:
            continue
        if r["index"] not in out or (out[r["index"]]["status"] == "timeout" and r.get("rerun") == "timeouts"):
            out[r["index"]] = r
    for i, r in out.items():
        if r["status"] in KILLED and (r.get("by") or "").startswith("tests/test_mutants_"):
            out[i] = {**r, "status": "survived"}
    return out


def run_module(module: str, again: bool, only: set[int] | None, timeouts: bool = False) -> None:
    target = TARGETS[module]
    tests = existing(target.tests)
    source = (ROOT / module).read_text(encoding="utf-8")
    found = mutants_lib.mutants(source, target.scopes)
    key = fingerprint(module, tests)
    source_hash = hashlib.sha1(source.encode()).hexdigest()[:12]
    done = latest(module)
    rerun = ("timeout",) if timeouts else ("survived", "not reached", "timeout") if again else None
    todo = [m for m in found if (only is None or m.index in only) and (
        done.get(m.index, {}).get("status") in rerun if rerun else done.get(m.index, {}).get("tests") != key)]
    print(f"{module}: {len(found)} mutants, {len(todo)} to run against {', '.join(tests)}", flush=True)
    if not todo:
        return
    baseline = runner.baseline(ROOT, module, tests)
    RESULTS.mkdir(exist_ok=True)
    with results_file(module).open("a") as out:
        for m in todo:
            started = time.monotonic()
            result = runner.run_mutant(ROOT, module, source, m, target.scopes, tests, baseline)
            record = {"index": m.index, "line": m.line, "scope": m.scope, "kind": m.kind, "original": m.original,
                      "mutated": m.mutated, "source": source_hash, "tests": key,
                      "seconds": round(time.monotonic() - started, 1), **result}
            if timeouts:
                record["rerun"] = "timeouts"
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            print(f"  #{m.index} line {m.line} {m.kind}: {m.original} -> {m.mutated}: {result['status']}"
                  f" ({record['seconds']} s{', ' + result['by'] if result.get('by') else ''})", flush=True)


KILLED = ("killed", "timeout", "crashed")


def judged(module: str, found: list, table: dict) -> dict[int, str]:
    """The entries of `table` (tools/equivalents.py) for this module that still match its mutants."""
    by_index = {m.index: m for m in found}
    out = {}
    for index, (line, original, why) in table.get(module, {}).items():
        m = by_index.get(index)
        if m is None or m.line != line or m.original != original:
            print(f"{module}: #{index} no longer matches line {line} {original!r}; not used", file=sys.stderr)
        else:
            out[index] = why
    return out


def report(modules: list[str], survivors: bool, before: bool = False) -> None:
    print("| module | mutants | killed | of which time-outs | equivalent | survived | not reached | kill rate "
          "| without the equivalent |")
    print("|---|---|---|---|---|---|---|---|---|")
    lost = []
    for module in modules:
        found = mutants_lib.mutants((ROOT / module).read_text(encoding="utf-8"), TARGETS[module].scopes)
        done = first_pass(module) if before else latest(module)
        statuses = [done.get(m.index, {}).get("status", "not run") for m in found]
        equivalent = {i: why for i, why in judged(module, found, equivalents.EQUIVALENT).items()
                      if done.get(i, {}).get("status") in ("survived", "not reached")}
        not_worth = judged(module, found, equivalents.NOT_WORTH)
        killed = sum(s in KILLED for s in statuses)
        ran = sum(s != "not run" for s in statuses)
        rate = f"{100 * killed / ran:.1f}%" if ran else "-"
        left = ran - len(equivalent)
        rate_left = f"{100 * killed / left:.1f}%" if left else "-"
        missing = f" ({len(found) - ran} not run)" if ran < len(found) else ""
        lost_here = [(m, s) for m, s in zip(found, statuses) if s in ("survived", "not reached")]
        print(f"| {module} | {len(found)}{missing} | {killed} | {statuses.count('timeout')} | {len(equivalent)} | "
              f"{sum(s == 'survived' and m.index not in equivalent for m, s in lost_here)} | "
              f"{sum(s == 'not reached' and m.index not in equivalent for m, s in lost_here)} | {rate} | {rate_left} |")
        for m, s in lost_here:
            why = (f"equivalent: {equivalent[m.index]}" if m.index in equivalent else
                   f"not worth a test: {not_worth[m.index]}" if m.index in not_worth else "")
            lost.append((module, done[m.index], why))
    if survivors:
        for module, r, why in lost:
            print(f"{module}:{r['line']} #{r['index']} {r['scope']} [{r['status']}] {r['original']}  ->  {r['mutated']}"
                  + (f"  ({why})" if why else ""))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"from: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants without running them")
    parser.add_argument("--report", action="store_true", help="kill rates from the recorded results")
    parser.add_argument("--survivors", action="store_true", help="with --report: list the survivors")
    parser.add_argument("--before", action="store_true",
                        help="with --report: against the tests before tests/test_mutants_*.py (the first pass)")
    parser.add_argument("--again", action="store_true", help="rerun the recorded survivors (after adding tests)")
    parser.add_argument("--timeouts", action="store_true", help="rerun the recorded time-outs only")
    parser.add_argument("--only", type=lambda s: {int(x) for x in s.split(",")}, help="mutant numbers, e.g. 3,17")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"not a target: {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    modules = args.modules or list(TARGETS)
    if args.report:
        return report(modules, args.survivors, args.before)
    if args.list:
        for module in modules:
            for m in mutants_lib.mutants((ROOT / module).read_text(encoding="utf-8"), TARGETS[module].scopes):
                print(f"{module}:{m.line} #{m.index} {m.scope} {m.kind}: {m.original} -> {m.mutated}")
        return
    runner.preload()
    for module in modules:
        run_module(module, args.again, args.only, args.timeouts)


if __name__ == "__main__":
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the running child is stopped too
    main()
