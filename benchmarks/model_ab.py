"""This checkout's model against another checkout's, on the same batches in one process: what a
change to xlmr/ costs or gains, both timed side by side under the same machine load.

    git worktree add ../before main
    python -m benchmarks.model_ab --other ../before --data-dir ../shared/data/panx

The other checkout's `xlmr` package is loaded under another name (its imports are relative, so
they resolve inside it). Both models get the same random weights of a size
(benchmarks/throughput_models.SIZES), and run real PAN-X German batches as training
(length-grouped, 24) and evaluation (sorted, 64) make them: inference under no_grad, training
as forward with the loss and backward (no optimizer: the model is what is compared). This
checkout runs twice: called with the mask alone, as the training loop and the tagger call it,
and with the lengths the host knows, as prediction calls it. Each round runs every variant's
block, in reverse order every other round. Reported: the best block of each (as timeit does),
the median block's ratio (steadier on a machine others load in bursts), and "(k/n)": in how many
rounds this checkout's block beat the other's block of the same round. `--cpu-time` counts the
process's CPU seconds instead of wall seconds (tokens per CPU second): a machine that others
load in bursts moves wall time by 2x between blocks, and CPU time far less.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.provenance import provenance, summary, write_result
from benchmarks.throughput_cells import DEFAULT_SPM, panx_cells
from benchmarks.throughput_models import SIZES, supported_precisions
from runtime.devices import wait_for
from runtime.precision import autocast_for
from xlmr.config import XLMRConfig
from xlmr.model import XLMRForTokenClassification

clock = time.perf_counter  # --cpu-time: time.process_time
VARIANTS = ("other", "this", "this+lengths")


def other_model_class(root: Path, name: str = "xlmr_other"):
    """XLMRForTokenClassification of the checkout at `root`, imported as `name`."""
    spec = importlib.util.spec_from_file_location(name, root / "xlmr" / "__init__.py",
                                                  submodule_search_locations=[str(root / "xlmr")])
    if spec is None or not (root / "xlmr" / "model.py").is_file():
        raise FileNotFoundError(f"no xlmr/model.py under {root}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.model").XLMRForTokenClassification, importlib.import_module(f"{name}.config").XLMRConfig


def build(size: str, other_root: Path, device: torch.device) -> dict:
    spec = SIZES[size] | {"id2label": {i: f"T{i}" for i in range(7)}}
    torch.manual_seed(0)
    this = XLMRForTokenClassification(XLMRConfig.from_dict(spec))
    cls, config = other_model_class(other_root)
    other = cls(config.from_dict(spec))
    other.load_state_dict(this.state_dict())
    return {"other": other.to(device), "this": this.to(device), "this+lengths": this}


def block(variant: str, model, batches, mode: str, dtype, device) -> tuple[float, int]:
    """(seconds, real tokens) of one pass over the batches after one warm-up batch."""
    model.train(mode == "train")
    seconds, tokens = 0.0, 0
    for k, b in enumerate([batches[0]] + batches):
        ids, mask = b.input_ids.to(device), b.attention_mask.to(device)
        extra = {"lengths": b.lengths} if variant == "this+lengths" else {}
        wait_for(device)
        t0 = clock()
        with torch.set_grad_enabled(mode == "train"), autocast_for(device, dtype):
            logits, loss = model(ids, mask, b.labels.to(device) if mode == "train" else None, **extra)
        if mode == "train":
            loss.backward()
        wait_for(device)
        if k:  # the first is the warm-up
            seconds, tokens = seconds + clock() - t0, tokens + b.tokens
        model.zero_grad(set_to_none=True)
    return seconds, tokens


def measure(models: dict, cells: dict, precisions: list[str], rounds: int, device) -> list[dict]:
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    rows = []
    for precision in precisions:
        for mode, cell in cells.items():
            runs = {v: [] for v in VARIANTS}  # tokens/s per round
            for r in range(rounds):
                for v in VARIANTS if r % 2 == 0 else reversed(VARIANTS):
                    seconds, tokens = block(v, models[v], cell.batches, mode, dtypes[precision], device)
                    runs[v].append(tokens / seconds)
            best = {v: max(rates) for v, rates in runs.items()}
            median = {v: statistics.median(rates) for v, rates in runs.items()}
            rows.append({"precision": precision, "mode": mode, "tokens_per_s": best, "per_round": runs,
                         **{f"{v}/other": best[v] / best["other"] for v in VARIANTS[1:]},
                         **{f"{v}/other median": median[v] / median["other"] for v in VARIANTS[1:]},
                         **{f"{v} won": sum(a > b for a, b in zip(runs[v], runs["other"])) for v in VARIANTS[1:]}})
            print(f"{precision} {mode}: " + ", ".join(f"{v} {best[v]:.0f}" for v in VARIANTS), flush=True)
    return rows


def markdown(rows: list[dict], rounds: int) -> str:
    lines = ["# This checkout's model against another's, side by side", "",
             "| precision | mode | other tok/s | this tok/s | this+lengths tok/s | this/other | this+lengths/other "
             "| medians: this/other | this+lengths/other |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = r["tokens_per_s"]
        lines.append(f"| {r['precision']} | {r['mode']} | {t['other']:.0f} | {t['this']:.0f} | {t['this+lengths']:.0f} | "
                     f"{r['this/other']:.3f}x ({r['this won']}/{rounds}) | "
                     f"{r['this+lengths/other']:.3f}x ({r['this+lengths won']}/{rounds}) | "
                     f"{r['this/other median']:.3f}x | {r['this+lengths/other median']:.3f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", type=Path, required=True, help="the root of the other checkout")
    p.add_argument("--data-dir", required=True, help="PAN-X folder")
    p.add_argument("--spm", type=Path, default=DEFAULT_SPM)
    p.add_argument("--size", default="e5-small", choices=list(SIZES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", nargs="+", default=None)
    p.add_argument("--batches", type=int, default=4, help="PAN-X batches per mode")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--cpu-time", action="store_true",
                   help="time this process's CPU seconds, not wall time: on a machine that other jobs load, "
                        "what the code costs rather than what the machine gave it")
    p.add_argument("--output-dir", type=Path, default=Path("runs/model_ab"))
    args = p.parse_args(argv)
    global clock
    clock = time.process_time if args.cpu_time else time.perf_counter
    device = torch.device(args.device)
    record = provenance(__file__, sys.argv[1:] if argv is None else argv, device)
    print(summary(record))
    models = build(args.size, args.other.resolve(), device)
    cells = panx_cells(args.data_dir, args.spm, args.batches)
    rows = measure(models, cells, args.precisions or supported_precisions(device), args.rounds, device)
    write_result(args.output_dir / "model_ab.json", {"size": args.size, "rows": rows}, record, markdown(rows, args.rounds))
    print((args.output_dir / "model_ab.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
