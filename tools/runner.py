"""Running pytest on a mutated module in a forked child: the traced first run that records which
tests execute which lines, and one run per mutant (tools/mutate.py says why it is built so)."""
from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

PROJECT = {"xlmr", "loaders", "evaluation", "runtime", "training", "experiments", "serving", "tests",
           "train_loop", "eval", "benchmarks", "conftest"}
HEAVY = ("torch", "numpy", "datasets", "seqeval.metrics", "sentencepiece", "safetensors", "hypothesis",
         "transformers", "tokenizers", "pytest")
LOG = Path(tempfile.gettempdir()) / f"mutate-{os.getpid()}.log"


def preload() -> None:
    """Import the heavy libraries once, before any fork, and make Hypothesis deterministic and
    without its example database (a failing example saved under one mutant must not decide the next)."""
    import importlib

    for name in HEAVY:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from hypothesis import settings

    settings.register_profile("mutants", database=None, derandomize=True)
    settings.load_profile("mutants")
    _share_sentencepiece()


def _share_sentencepiece() -> None:
    """Loading XLM-R's SentencePiece model (and the tokenizer's run model) takes seconds; every
    child would do it again. The parent loads them once and a child asking for a model of the same
    bytes gets the loaded processor (read-only use: encode and look-ups). Any other bytes, such as
    a run model a mutant changed, are loaded as usual."""
    import hashlib

    import sentencepiece as spm

    original, loaded = spm.SentencePieceProcessor, {}

    def processor(*args, model_file=None, model_proto=None, **kwargs):
        if args or kwargs or (model_file is None) == (model_proto is None):
            return original(*args, model_file=model_file, model_proto=model_proto, **kwargs)
        data = Path(model_file).read_bytes() if model_file is not None else model_proto
        key = hashlib.sha1(data).hexdigest()
        if key not in loaded:
            loaded[key] = original(model_proto=data)
        return loaded[key]

    spm.SentencePieceProcessor = processor
    spm_file = Path(__file__).resolve().parents[2] / "shared" / "models" / "xlm-roberta-tokenizer" / "sentencepiece.bpe.model"
    if spm_file.is_file():
        from xlmr.tokenizer import XLMRTokenizer  # the children import the project afresh

        XLMRTokenizer(spm_file)._run_processor()


class _MutatedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module from a compiled code object instead of its file."""

    def __init__(self, name: str, path: Path, code):
        self.name, self.path, self.code = name, path, code

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(self.code, module.__dict__)


class _Recorder:
    """A pytest plugin: the first failing test, each test's duration and fixtures, and (traced)
    the module's lines each test executes, with shared fixtures' lines kept apart."""

    def __init__(self, trace_file: str | None):
        self.trace_file, self.failed, self.current = trace_file, None, None
        self.fixtures: list[tuple[str, str]] = []  # (key, scope) of the fixtures being set up
        self.lines: dict[str, set[int]] = {}
        self.durations: dict[str, float] = {}
        self.uses: dict[str, list[str]] = {}
        self.order: list[str] = []
        if trace_file:
            sys.settrace(self._call)
            threading.settrace(self._call)

    def _call(self, frame, event, arg):
        return self._line if frame.f_code.co_filename == self.trace_file else None

    def _line(self, frame, event, arg):
        if event == "line":
            if self.fixtures and self.fixtures[-1][1] != "function":
                bucket = self.fixtures[-1][0]
            else:
                bucket = self.current or "<import>"
            self.lines.setdefault(bucket, set()).add(frame.f_lineno)
        return self._line

    def pytest_runtest_logstart(self, nodeid, location):
        self.current = nodeid
        self.order.append(nodeid)

    def pytest_runtest_logfinish(self, nodeid, location):
        self.current = None

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed and self.failed is None:
            self.failed = report.nodeid

    def pytest_collectreport(self, report):
        if report.failed and self.failed is None:  # a test file that cannot import the mutant
            self.failed = f"collecting {report.nodeid}"

    def pytest_collection_modifyitems(self, items):
        for item in items:
            defs = item._fixtureinfo.name2fixturedefs
            self.uses[item.nodeid] = [f"fixture {d[-1].baseid}::{name}" for name, d in defs.items() if d]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        self.fixtures.append((f"fixture {fixturedef.baseid}::{fixturedef.argname}", fixturedef.scope))
        try:
            yield
        finally:
            self.fixtures.pop()


def _child(root: Path, tests: list[str], out: str, trace_file: str | None, mutated=None) -> None:
    """In the forked child: import the project afresh (the mutant through its hook), run pytest, write
    what the recorder saw to `out`, and exit without returning to the parent's code."""
    code = 70
    try:
        os.setpgid(0, 0)
        log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for name in [n for n in sys.modules if n.split(".")[0] in PROJECT]:
            del sys.modules[name]
        if mutated is not None:
            sys.meta_path.insert(0, mutated)
        recorder = _Recorder(trace_file)
        code = int(pytest.main([*tests, "-x", "-q", "--no-header", "-p", "no:randomly"], plugins=[recorder]))
        sys.settrace(None)
        Path(out).write_text(json.dumps({"rc": code, "failed": recorder.failed, "durations": recorder.durations,
                                         "order": recorder.order, "uses": recorder.uses,
                                         "lines": {k: sorted(v) for k, v in recorder.lines.items()}}))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork(root: Path, tests: list[str], timeout: float, trace_file: str | None = None, mutated=None) -> dict:
    """Runs `_child` and waits at most `timeout` seconds. {"rc": ...} plus what the child wrote;
    rc "timeout" or "signal N" where it wrote nothing."""
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    pid = os.fork()
    if pid == 0:
        _child(root, tests, out, trace_file, mutated)
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                _kill(pid)
                os.unlink(out)
                return {"rc": "timeout"}
            time.sleep(0.05)
    except BaseException:  # Ctrl-C or SIGTERM of the parent: the child (its own process group) goes too
        _kill(pid)
        raise
    text = Path(out).read_text()
    os.unlink(out)
    if text:
        return json.loads(text)
    return {"rc": f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"}


def _kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except ProcessLookupError:
            pass
    os.waitpid(pid, 0)


class Baseline:
    """Which tests execute which lines of the module, and how long each takes (traced)."""

    def __init__(self, run: dict, wall: float):
        self.order = run["order"]
        self.durations = run["durations"]
        lines = {k: set(v) for k, v in run["lines"].items()}
        self.at_import = lines.get("<import>", set())
        self.lines = {t: lines.get(t, set()).union(*(lines.get(f, set()) for f in run["uses"].get(t, [])))
                      for t in self.order}
        self.overhead = max(wall - sum(self.durations.values()), 2.0)

    def tests_for(self, lines: set[int]) -> list[str] | None:
        """The tests that execute one of `lines`; None when one of them runs at import (every
        test depends on it)."""
        span = lines
        if span & self.at_import:
            return None
        return [t for t in self.order if span & self.lines[t]]

    def limit(self, tests: list[str]) -> float:
        # Generous: the machine is shared and its load varies; only an endless loop should reach it.
        return 60 + 3 * (self.overhead + sum(self.durations.get(t, 0.0) for t in tests))


def baseline(root: Path, module: str, tests: list[str]) -> Baseline:
    started = time.monotonic()
    run = _fork(root, tests, timeout=3600, trace_file=str(root / module))
    if run["rc"] != 0:
        raise SystemExit(f"the tests fail without any mutant ({run['rc']}, {run.get('failed')}); see {LOG}")
    if not any(run["lines"].values()):
        raise SystemExit(f"the tests never executed {root / module} (imported from elsewhere?)")
    result = Baseline(run, time.monotonic() - started)
    print(f"  traced run: {len(result.order)} tests in {time.monotonic() - started:.0f} s", flush=True)
    return result


def _status(run: dict) -> dict:
    rc = run["rc"]
    if rc == 0:
        return {"status": "survived"}
    if rc == 1:
        return {"status": "killed", "by": run["failed"]}
    if rc in (2, 3) or (rc == 4 and run.get("failed")):  # the module raises on import, or pytest's internal error
        return {"status": "killed", "by": run.get("failed") or ("collection" if rc == 2 else "internal error")}
    if rc == "timeout":
        return {"status": "timeout"}
    if isinstance(rc, str) and rc.startswith("signal"):
        return {"status": "crashed", "by": rc}
    raise SystemExit(f"pytest could not run the tests ({rc}); see {LOG}")


def run_mutant(root: Path, module: str, source: str, mutant, scopes, tests: list[str], base: Baseline) -> dict:
    """{"status": killed | timeout | crashed | survived | not reached | invalid, "by": test, "ran": n}"""
    import mutants as mutants_lib

    path = root / module
    try:
        code = compile(mutants_lib.mutated_tree(source, mutant.index, scopes), str(path), "exec")
    except (SyntaxError, ValueError) as e:
        return {"status": "invalid", "by": str(e)}
    name = module[:-3].replace("/", ".")
    selected = base.tests_for(set(range(mutant.line, mutant.end_line + 1))
                              | set(range(mutant.statement[0], mutant.statement[1] + 1)))
    if selected == []:
        return {"status": "not reached", "ran": 0}
    chosen = base.order if selected is None else selected
    result = _status(_fork(root, chosen, base.limit(chosen), mutated=_MutatedModule(name, path, code)))
    rest = [t for t in base.order if t not in set(chosen)]
    if result["status"] == "survived" and rest:
        # Confirm against the other tests, in a fresh child: one that used an object a selected
        # test built and cached (so it never ran the mutated line) now builds it itself. The
        # selected tests already passed; running them again would only double a survivor's cost.
        result = _status(_fork(root, rest, base.limit(rest), mutated=_MutatedModule(name, path, code)))
        result["confirmed"] = True
    return {**result, "ran": len(chosen)}
