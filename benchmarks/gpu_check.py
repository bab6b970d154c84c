"""The first measurement on a GPU, in one command and under 8 minutes: throughput of the three
sizes at sequence length 128, ours (padded, compiled, variable-length attention) against
transformers (sdpa), and a 200-step German training run with its test F1.

    python -m benchmarks.gpu_check --model HF_OR_OUR_FOLDER --data-dir ../shared/data/panx   # on a GPU
    python -m benchmarks.gpu_check --device cpu --quick --model M --data-dir D            # CI: seconds

Steps, in this order, each through the command a user would type (written down in the report):
1. `python train_loop.py --langs de --num-samples 4800 --epochs 1 --batch-size 24 ...`: 200 steps of
   the recipe (its defaults decide precision, attention and optimizer for the device), then
   validation, the tag-transition prior and the German test F1; samples/s, tokens/s, MFU;
2. `python -m benchmarks.throughput --sizes SIZE --seq-lens 128 --batch-sizes 32 --ragged ...` for
   e5-small, xlm-roberta-base and xlm-roberta-large: ours, ours-compiled, ours-varlen, hf-sdpa;
   inference and training; bf16 where native (else fp16); a batch without padding, the same
   shape with lengths spread from 16 to 128, and real PAN-X batches when --data-dir is given;
   tokens/s, MFU against the measured matmul peak and the datasheet's bf16 peak, peak memory.
A step starts only if its estimate fits in what is left of --budget-s (480); one that does not is
named as skipped. The estimates are guesses for an H100/H200-class GPU until a run replaces them.
`--quick` (CI, a CPU): the tiny size, 2 x 16 batches, one block, fp32, no compiled cell
(compilation takes minutes on a CPU), 2 training steps. Writes OUT/gpu_check.json and .md with
their provenance (benchmarks/provenance.py), OUT/train/ and OUT/throughput-SIZE/.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import throughput
from benchmarks.provenance import provenance, summary, write_result
from benchmarks.throughput_cells import DEFAULT_SPM
from benchmarks.throughput_models import DEFAULT_SIZES
from benchmarks.throughput_report import DATASHEET_TFLOPS, datasheet_name, machine

BUDGET_S = 480
# Seconds each step is expected to take on an H100/H200-class GPU (not yet measured: guesses).
ESTIMATE_S = {"train": 90, "e5-small": 60, "xlm-roberta-base": 80, "xlm-roberta-large": 140, "tiny": 30}
clock = time.perf_counter  # a module attribute, so that a test can run the budget on a fake clock


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", help="the checkpoint to fine-tune (Hugging Face or ours); without it no training step")
    p.add_argument("--data-dir", help="PAN-X folder; without it no training step and no PAN-X cells")
    p.add_argument("--spm", type=Path, default=DEFAULT_SPM, help="SentencePiece model for the PAN-X cells")
    p.add_argument("--steps", type=int, default=200, help="training steps of 24 sentences")
    p.add_argument("--budget-s", type=float, default=BUDGET_S)
    p.add_argument("--quick", action="store_true", help="CI-sized: the tiny size, seconds on a CPU")
    p.add_argument("--output-dir", type=Path, default=Path("runs/gpu_check"))
    return p.parse_args(argv)


def precision_for(device: torch.device) -> str:
    """bf16 where the device computes it natively (the datasheet peak MFU is quoted against), else fp16 on a GPU."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if "bf16" in throughput.supported_precisions(device) else "fp16"


def train_argv(args, out: Path) -> list[str]:
    batch = 8 if args.quick else 24
    steps = 2 if args.quick else args.steps
    return ["--langs", "de", "--eval-langs", "de", "--model", args.model, "--data-dir", args.data_dir,
            "--num-samples", str(steps * batch), "--epochs", "1", "--batch-size", str(batch),
            "--output-dir", str(out), "--device", args.device, "--no-progress"]


def throughput_argv(args, size: str, out: Path, precision: str) -> list[str]:
    quick = ["--batch-sizes", "2", "--seq-lens", "16", "--warmup", "1", "--steps", "1", "--rounds", "1",
             "--quick-peak", "--impls", "ours", "ours-varlen", "hf-sdpa"]
    full = ["--batch-sizes", "32", "--seq-lens", "128", "--warmup", "3", "--steps", "10", "--rounds", "2",
            "--impls", "ours", "ours-compiled", "ours-varlen", "hf-sdpa"]
    panx = ["--data-dir", args.data_dir, "--spm", str(args.spm), "--panx-batches", "4"] if args.data_dir and not args.quick else []
    return (["--device", args.device, "--sizes", size, "--precisions", precision, "--modes", "infer", "train", "--ragged",
             "--output-dir", str(out)] + (quick if args.quick else full) + panx)


def run_training(args, out: Path, peaks: dict) -> dict:
    import train_loop

    argv = train_argv(args, out)
    if train_loop.main(argv) != 0:
        return {"command": "python train_loop.py " + " ".join(argv), "error": "the run failed (its message is above)"}
    results = json.loads((out / "results.json").read_text())
    rate = results["throughput"]
    achieved = rate["model_tflops_per_second"]
    return {"command": "python train_loop.py " + " ".join(argv), "test_f1": results["test_f1"],
            "steps": results["config"]["total_steps"], "train_seconds": rate["train_seconds"],
            "samples_per_s": rate["samples_per_second"], "tokens_per_s": rate["tokens_per_second"],
            "model_tflops": achieved, "mfu_measured": achieved / peaks["measured"] if peaks["measured"] else None,
            "mfu_datasheet": achieved / peaks["datasheet"] if peaks["datasheet"] else None,
            "peak_memory_mb": rate["peak_memory_mb"], "precision": results["config"]["amp_reason"]}


def run_throughput(args, size: str, out: Path, precision: str) -> dict:
    argv = throughput_argv(args, size, out, precision)
    throughput.main(argv)
    rows = json.loads((out / "throughput.json").read_text())["rows"]
    return {"command": "python -m benchmarks.throughput " + " ".join(argv), "rows": rows}


def free_device(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    args = parse_args(argv)
    device, started = torch.device(args.device), clock()
    record = provenance(__file__, sys.argv[1:] if argv is None else argv, device)
    print(summary(record))
    precision = precision_for(device)
    info = machine(device, [precision], quick=args.quick)
    sheet = DATASHEET_TFLOPS.get(datasheet_name(torch.cuda.get_device_name(device))) if device.type == "cuda" else None
    peaks = {"measured": info["peak_tflops"][precision], "datasheet": sheet and sheet[precision], "precision": precision}
    sizes = ["tiny"] if args.quick else list(DEFAULT_SIZES)
    steps = (["train"] if args.model and args.data_dir else []) + sizes
    report = {"budget_s": args.budget_s, "peaks": peaks, "steps": {}, "skipped": {}}
    if "train" not in steps:
        report["skipped"]["train"] = "no --model or --data-dir"
    for step in steps:
        left = args.budget_s - (clock() - started)
        if ESTIMATE_S[step] > left:
            report["skipped"][step] = f"expected ~{ESTIMATE_S[step]} s, {left:.0f} s of the budget left"
            continue
        t0 = clock()
        if step == "train":
            result = run_training(args, args.output_dir / "train", peaks)
        else:
            result = run_throughput(args, step, args.output_dir / f"throughput-{step}", precision)
        report["steps"][step] = result | {"wall_s": clock() - t0}
        free_device(device)
    report["wall_s"] = clock() - started
    write_result(args.output_dir / "gpu_check.json", report, record, markdown(report))
    print((args.output_dir / "gpu_check.md").read_text())
    return 0


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def markdown(report: dict) -> str:
    """The check's figures: the training run, then one line per size, cell and implementation."""
    peaks = report["peaks"]
    lines = ["# GPU check", "", f"Wall time {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget. "
             f"Peak ({peaks['precision']}): measured matmul {peaks['measured']:.3g} TFLOP/s, datasheet "
             f"{peaks['datasheet'] or 'unknown'}.", ""]
    train = report["steps"].get("train")
    if train and "error" not in train:
        lines += ["## Training (German)", "", f"`{train['command']}`", "",
                  f"{train['steps']} steps in {train['train_seconds']:.1f} s: {train['samples_per_s']:.1f} samples/s, "
                  f"{train['tokens_per_s']:.0f} tokens/s, MFU {_pct(train['mfu_measured'])} of the measured peak, "
                  f"{_pct(train['mfu_datasheet'])} of the datasheet; peak memory {train['peak_memory_mb']:.0f} MB; "
                  f"test F1 " + ", ".join(f"{k} {v:.4f}" for k, v in train["test_f1"].items()) + f" ({train['precision']}).", ""]
    elif train:
        lines += ["## Training", "", f"`{train['command']}`: {train['error']}", ""]
    head = "| size | mode | cell | impl | tok/s | x hf-sdpa | MFU (measured) | MFU (datasheet) | peak MB |"
    table = [head, "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for size, step in report["steps"].items():
        if size == "train":
            continue
        hf = {(r["mode"], r["cell"]): r["tokens_per_s"] for r in step["rows"] if r["impl"] == "hf-sdpa"}
        for r in step["rows"]:
            ref = hf.get((r["mode"], r["cell"]))
            cells = [size, r["mode"], r["cell"], r["impl"], f"{r['tokens_per_s']:.0f}",
                     f"{r['tokens_per_s'] / ref:.2f}x" if ref else "-",
                     _pct(r["tflops"] / peaks["measured"] if peaks["measured"] else None),
                     _pct(r["tflops"] / peaks["datasheet"] if peaks["datasheet"] else None),
                     "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"]
            table.append("| " + " | ".join(cells) + " |")
    if len(table) > 2:
        seqs = sorted({f"{r['seq']:.0f}" for step in report["steps"].values() for r in step.get("rows", ())})
        lines += [f"## Throughput (padded length {', '.join(seqs)})", ""] + table + [""]
    for step, why in report["skipped"].items():
        lines.append(f"Skipped {step}: {why}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
