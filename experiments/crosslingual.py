"""The book's cross-lingual experiments: which training languages tag which test languages, and
how many French sentences it takes to beat zero-shot transfer from German.

Every run is a training run of its own in `<root>/<name>/`: skipped when its results.json exists,
resumed from its last/ when it was interrupted, so the whole set can be stopped and started again.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.plots import plot_learning_curve
from evaluation.reports import write_json_atomic, write_text_atomic
from loaders.conll import NerDataError
from loaders.panx import SWISS_LANGS
from training import RunError, TrainConfig, command_line, train
from training.state import resumable_state
from xlmr.weights import CheckpointError

# The TrainConfig fields each run's plan and the command's own flags choose; --set takes the rest.
CHOSEN = ("langs", "eval_langs", "num_samples", "output_dir", "resume", "model", "data_dir", "amp", "device")
CURVE_SIZES = (250, 500, 1000, 2000, 4000)
EXPERIMENTS = ("de", "curve", "each", "de-fr", "all")


@dataclass
class Settings:
    """What every run of the set shares."""
    model: str
    root: Path
    data_dir: str | None = None
    only: tuple[str, ...] = EXPERIMENTS
    curve_sizes: tuple[int, ...] = CURVE_SIZES
    quick: bool = False  # 1 epoch for runs on whole language sets
    amp: str = "auto"
    device: str | None = None
    drop_weights: bool = False  # keep only de's model.safetensors
    extra: dict = field(default_factory=dict)  # further TrainConfig fields for every run (epochs overrides --quick)


def experiment_plan(which=EXPERIMENTS, curve_sizes=CURVE_SIZES, langs=SWISS_LANGS) -> list[dict]:
    """The training runs behind the table and the curve, in the order they run: de first (its
    fr score is the curve's zero-shot line), then the cheap curve, then the long multilingual runs.
    `full_epochs` marks runs on whole language sets, which --quick shortens."""
    runs = []
    if "de" in which or "each" in which:
        runs.append({"name": "de", "langs": ["de"], "eval_langs": list(langs), "full_epochs": True})
    if "curve" in which:
        runs += [{"name": f"fr-{n}", "langs": ["fr"], "eval_langs": ["fr"], "num_samples": n, "full_epochs": False}
                 for n in curve_sizes]
    if "each" in which:
        runs += [{"name": lang, "langs": [lang], "eval_langs": [lang], "full_epochs": True}
                 for lang in langs if lang != "de"]
    if "de-fr" in which:
        runs.append({"name": "de-fr", "langs": ["de", "fr"], "eval_langs": list(langs), "full_epochs": True})
    if "all" in which:
        runs.append({"name": "all", "langs": list(langs), "eval_langs": list(langs), "full_epochs": True})
    return runs


def run_config(spec: dict, s: Settings) -> TrainConfig:
    out = s.root / spec["name"]
    chosen = dict(langs=spec["langs"], eval_langs=spec["eval_langs"], num_samples=spec.get("num_samples"),
                  output_dir=str(out), resume=str(out) if resumable_state(out) is not None else None,
                  model=s.model, data_dir=s.data_dir, amp=s.amp, device=s.device)
    return TrainConfig(**{"epochs": 1 if s.quick and spec["full_epochs"] else 3, **s.extra, **chosen})


def run_experiment(spec: dict, s: Settings) -> dict:
    """One training run in root/<name>: skipped when its results.json exists, resumed when it was
    interrupted, trained from scratch otherwise."""
    done = s.root / spec["name"] / "results.json"
    if done.is_file():
        print(f"== {spec['name']}: done before, read from {done}")
        return json.loads(done.read_text())
    cfg = run_config(spec, s)
    print(f"== {spec['name']}: python train_loop.py {' '.join(command_line(cfg))}")
    return train(cfg)


def transfer_table(results: dict[str, dict], langs=SWISS_LANGS) -> dict[str, dict[str, float | None]]:
    """Rows de / each / all / de-fr, columns the test languages: the book's table. 'each' takes
    every language's score from the run trained on that language alone."""
    def f1(run, lang):
        return results.get(run, {}).get("test_f1", {}).get(lang)

    return {
        "de": {lang: f1("de", lang) for lang in langs},
        "each": {lang: f1(lang, lang) for lang in langs},
        "all": {lang: f1("all", lang) for lang in langs},
        "de-fr": {lang: f1("de-fr", lang) for lang in langs},
    }


def table_markdown(table: dict[str, dict], label: str = "trained on") -> str:
    langs = list(next(iter(table.values())))
    lines = ["| " + " | ".join([label] + langs) + " |", "|" + "---|" * (len(langs) + 1)]
    for row, scores in table.items():
        lines.append("| " + " | ".join([row] + ["-" if scores[x] is None else f"{scores[x]:.3f}" for x in langs]) + " |")
    return "\n".join(lines)


def table_csv(table: dict[str, dict], label: str = "trained_on") -> str:
    langs = list(next(iter(table.values())))
    rows = [",".join([label] + langs)]
    rows += [",".join([row] + ["" if s[x] is None else f"{s[x]:.4f}" for x in langs]) for row, s in table.items()]
    return "\n".join(rows) + "\n"


def crossing_point(sizes: list[int], f1s: list[float], zero_shot: float) -> float | None:
    """The training-set size at which the learning curve first reaches the zero-shot F1,
    interpolated linearly in log(size) between the two measured points around it; None when no
    point reaches it. A curve above the line from its first point crosses at or before that point."""
    points = sorted(zip(sizes, f1s))
    for k, (n, f) in enumerate(points):
        if f >= zero_shot:
            if k == 0:
                return float(n)
            (n0, f0) = points[k - 1]
            t = (zero_shot - f0) / (f - f0)
            return float(math.exp(math.log(n0) + t * (math.log(n) - math.log(n0))))
    return None


def run_all(s: Settings) -> dict:
    """Every planned run (done ones read back), then the tables, the curve and experiments.json."""
    s.root.mkdir(parents=True, exist_ok=True)
    plan = experiment_plan(s.only, s.curve_sizes)
    print(f"{len(plan)} runs into {s.root}: {', '.join(r['name'] for r in plan)}"
          + (" (--quick: 1 epoch on whole language sets)" if s.quick else ""))
    results = {}
    for spec in plan:
        try:
            results[spec["name"]] = run_experiment(spec, s)
        except (RunError, CheckpointError, NerDataError, FileNotFoundError) as e:
            raise RunError(f"in run {spec['name']}: {e}") from None
        if s.drop_weights and spec["name"] != "de":
            (s.root / spec["name"] / "model.safetensors").unlink(missing_ok=True)
    # The tables also take runs finished by earlier calls with other --only choices.
    for spec in experiment_plan(EXPERIMENTS, s.curve_sizes):
        done = s.root / spec["name"] / "results.json"
        if spec["name"] not in results and done.is_file():
            results[spec["name"]] = json.loads(done.read_text())
    summary = {"quick": s.quick, "runs": {name: {"test_f1": r["test_f1"], "epochs": r["config"]["epochs"],
                                                  "train_sentences": r["config"]["train_sentences"],
                                                  "train_seconds": r["throughput"]["train_seconds"]}
                                           for name, r in results.items()}}
    if any(name in results for name in ("de", "all", "de-fr")):
        table = transfer_table(results)
        write_text_atomic(s.root / "f1_table.md", table_markdown(table) + "\n")
        write_text_atomic(s.root / "f1_table.csv", table_csv(table))
        summary["table"] = table
        print("\nTest F1 (rows: training languages)\n" + table_markdown(table))
    summary |= learning_curve(results, s)
    write_json_atomic(s.root / "experiments.json", summary)
    return summary


def learning_curve(results: dict[str, dict], s: Settings) -> dict:
    """learning_curve.csv/.png from the fr-N runs, and where the curve crosses zero-shot de -> fr."""
    curve = [(n, results[f"fr-{n}"]["test_f1"]["fr"]) for n in s.curve_sizes if f"fr-{n}" in results]
    if not curve:
        return {}
    zero_shot = results["de"]["test_f1"]["fr"] if "de" in results else None
    sizes, f1s = [n for n, _ in curve], [f for _, f in curve]
    write_text_atomic(s.root / "learning_curve.csv", "fr_train_sentences,fr_test_f1\n"
                      + "".join(f"{n},{f:.4f}\n" for n, f in curve))
    plot_learning_curve(s.root / "learning_curve.png", sizes, f1s, zero_shot)
    print("\nfr learning curve: " + ", ".join(f"{n}: {f:.3f}" for n, f in curve))
    if zero_shot is None:
        return {}
    cross = crossing_point(sizes, f1s, zero_shot)
    print(f"zero-shot de -> fr: {zero_shot:.3f}; " + (
        f"fine-tuning on fr alone reaches it at ~{cross:.0f} sentences" if cross is not None
        else f"no curve point reaches it (largest: {max(sizes)} sentences)"))
    return {"zero_shot_fr": zero_shot, "crossing_sentences": cross}
