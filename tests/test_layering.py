"""The import layering a reader can draw, checked on the source: no file imports a layer above its
own, no two files import each other (even lazily, inside a function), the package never
imports `transformers`, and the model knows nothing of how it is run: `runtime` applies
precision, int8, torch.compile and ONNX to a loaded model from outside.

    xlmr  <-  runtime  <-  loaders  <-  evaluation, serving  <-  training  <-  experiments  <-  train_loop.py, eval.py  <-  benchmarks
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"xlmr": 0, "runtime": 1, "loaders": 2, "evaluation": 3, "serving": 3, "training": 4, "experiments": 5,
          "train_loop": 6, "eval": 6, "benchmarks": 7}
# What the model file must not import, by module name: how it is run is the runtime's business.
RUNTIME_WORDS = ("precision", "quantiz", "compile", "onnx", "amp")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60


def project_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the layers above."""
    files = {}
    for top in LAYERS:
        if (root / f"{top}.py").is_file():
            files[top] = root / f"{top}.py"
        for path in sorted((root / top).glob("*.py")) if (root / top).is_dir() else []:
            files[top if path.stem == "__init__" else f"{top}.{path.stem}"] = path
    return files


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """Every module `source` imports anywhere in it (top level or inside functions), resolved to
    the project's module names where they are ours, else to their top-level name."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:  # `from pkg import sub` names a submodule when one exists
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    known = set(files)
    graph = {}
    for module, path in files.items():
        found = imports_of(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", known)
        graph[module] = {m for m in found if m in known and m != module}
    return graph


def external_imports(files: dict[str, Path]) -> dict[str, set[str]]:
    known = set(files)
    return {m: {x.split(".")[0] for x in imports_of(m, p.read_text(encoding="utf-8"), p.name == "__init__.py", known)}
            for m, p in files.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    def layer(m):
        return LAYERS[m.split(".")[0]]
    return sorted(f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
                  for m, targets in graph.items() for t in targets if layer(t) > layer(m))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, found by depth-first search (each reported once, from where it closed)."""
    found, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                found.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_the_checker_finds_what_it_looks_for():
    # A lower layer importing a higher one, and a two-file cycle inside one layer.
    graph = {"xlmr.model": {"evaluation.predict"}, "evaluation.predict": set(),
             "training.a": {"training.b"}, "training.b": {"training.a"}}
    assert layer_violations(graph) == ["xlmr.model (layer 0) imports evaluation.predict (layer 3)"]
    assert cycles(graph) == [["training.a", "training.b", "training.a"]]
    # A lazy import inside a function counts, and relative imports resolve within the package.
    src = "from .scoring import f1_table\ndef f():\n    from training.loop import train\n"
    assert imports_of("evaluation.predict", src, False, {"evaluation.scoring", "training.loop"}) == {
        "evaluation.scoring", "training.loop"}


def test_no_layer_imports_a_higher_one():
    graph = import_graph(project_files())
    assert len(graph) > 20  # the walk found the project
    assert layer_violations(graph) == []


def test_the_model_knows_nothing_of_its_runtime():
    """xlmr imports nothing of runtime (which rewrites a built model from outside), and
    xlmr/model.py imports nothing about precision, int8, compilation or export, ours or not."""
    files = project_files()
    graph = import_graph(files)
    assert {t for m, targets in graph.items() if m.split(".")[0] == "xlmr" for t in targets
            if t.split(".")[0] == "runtime"} == set()
    imported = imports_of("xlmr.model", files["xlmr.model"].read_text(encoding="utf-8"), False, set(files))
    assert [m for m in imported if any(word in m.lower() for word in RUNTIME_WORDS)] == []
    assert "runtime" in {m.split(".")[0] for m in graph}  # the runtime package is walked at all


def test_no_import_cycles():
    assert cycles(import_graph(project_files())) == []


def test_the_package_never_imports_transformers():
    for module, external in external_imports(project_files()).items():
        if not module.startswith("benchmarks"):
            assert not external & {"transformers", "tokenizers"}, module


def test_files_and_functions_stay_short():
    """A file over 300 lines must say why in its docstring ("long because ..."); no function is
    over 60 lines."""
    for module, path in project_files().items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        if len(source.splitlines()) > MAX_FILE_LINES:
            assert "long because" in (ast.get_docstring(tree) or ""), f"{path.name}: {len(source.splitlines())} lines"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{module}.{node.name}"


def test_the_evaluation_command_line_starts_without_the_training_side():
    """`eval.py test|tag|sweep|serve` must not need `training` (or `experiments`, which loads it)."""
    code = ("import sys, eval; eval.build_parser(with_experiments=False).parse_args(['tag', '--model', 'm', 'x']); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'experiments'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
