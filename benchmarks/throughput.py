"""Throughput of our encoder against transformers', with the same weights on the same batches.

    python -m benchmarks.throughput --data-dir ../shared/data/panx            # this machine's defaults
    python -m benchmarks.throughput --sizes xlm-roberta-large --batch-sizes 8 --seq-lens 128
    python -m benchmarks.throughput --device cuda --sizes xlm-roberta-base --seq-lens 128 256 512

Implementations:
- `ours`: xlmr.model as the project runs it. Inference at bf16/fp16: the Linear weights cast
  once to that dtype (runtime.precision.cast_linears_for_inference, what eval.py and the service
  do; autocast computes identical values), where transformers' model recasts its fp32 weights
  on every forward. Training: the training loop's own update (training.recipe.apply_gradients:
  row-sparse embedding gradient, RowAdamW, per-row clipping);
  Attention padded (the batch padded again around it), as on a CPU;
- `ours-varlen` (only when asked for): the same with variable-length attention, padding dropped
  in training too (runtime/attention.py: what `--amp`'s decision picks on CUDA);
- `ours-compiled` (only when asked for): `ours` with its layers under torch.compile
  (runtime/compile.py), a fresh copy and empty Dynamo caches per precision and mode, and a
  recompile past Dynamo's limit an error rather than a silent fall-back to eager; its warm-up
  steps include the compilation;
- `hf-sdpa`, `hf-eager`: transformers' model for token classification with that attention, and
  torch.optim.AdamW(fused=True) + clip_grad_norm_ (the Trainer's optim="adamw_torch_fused");
- `ort-fp32`, `ort-int8` (CPU inference, fp32 tables; with onnxruntime installed): what a user
  deploying on a CPU picks. ONNX Runtime on our ONNX export of the same weights
  (runtime/onnx_export.py), all graph optimisations on, as many threads as torch; int8 is ONNX
  Runtime's own `quantize_dynamic` (QInt8 weights) of that file;
- `ours-int8` (CPU inference, fp32 tables): ours with `--quantize int8` (runtime/quantize.py).
Modes: `infer` (eval mode, no_grad, logits) and `train` (dropout on, forward with the loss,
backward, clipping, AdamW step, gradients cleared). Both under the same autocast for bf16/fp16
(and a gradient scaler for fp16).
Cells: every batch size x sequence length (random ids, no padding), with --ragged the same
shapes with lengths spread from T/8 to T, and with --data-dir real PAN-X German batches: length-grouped batches of 24 training sentences (train) and length-sorted
batches of 64 validation sentences (infer), padded to their longest sentence.
Weights: random, drawn once per size by transformers and copied into ours through the
converter's key table. Speed does not depend on the values, and nothing is downloaded.

Measured per cell and implementation (see throughput_report.py for the columns): each
implementation runs `--rounds` blocks of `--warmup` + `--steps` steps, in the order ours, hf...,
then reversed, so a drift of the machine hits all alike; a training block starts from a fresh
optimizer. The best block counts (as timeit does: slower blocks are the machine's noise). Peak
memory is taken over the first round's block from before its optimizer exists, so the optimizer
state (RowAdamW's moments, AdamW's) counts for every implementation alike.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.memory import PeakMemory
from benchmarks.provenance import provenance, summary
from benchmarks.throughput_cells import DEFAULT_SPM, Batch, Cell, grid_cell, panx_cells, ragged_cell
from benchmarks.throughput_models import DEFAULT_SIZES, SIZES, build_models, compiled_copy, supported_precisions
from benchmarks.throughput_report import machine, write_reports
from benchmarks.throughput_runtimes import FP32_INFERENCE_ONLY, default_impls, fp32_inference_models, weight_bytes
from runtime.attention import apply_attention
from runtime.devices import wait_for
from runtime.precision import apply_precision, autocast_for, cast_linears_for_inference, decide
from training.config import TrainConfig
from training.recipe import apply_gradients, build_optimizer, row_sparse_embedding
from training.throughput import attention_pairs, model_flops
from xlmr.model import XLMRForTokenClassification

__all__ = ["SIZES", "build_models", "supported_precisions", "main"]  # the sizes and models live in throughput_models
clock = time.perf_counter  # a module attribute, so that a test can time steps with a fake clock
IMPLS = ("ours", "hf-sdpa", "hf-eager", "ours-varlen", "ours-compiled", "ours-int8", "ort-fp32", "ort-int8")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_OF = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}  # the --amp choice of each precision


class Runner:
    """One implementation's step in one mode and precision: `step(batch)` runs it, `close()` frees
    what the block allocated (the optimizer and its state)."""

    def __init__(self, impl: str, model, mode: str, dtype, device: torch.device):
        self.impl, self.model, self.mode, self.dtype, self.device = impl, model, mode, dtype, device
        self.ours, self.ort = impl.startswith("ours"), impl.startswith("ort")
        if impl.startswith("hf"):
            model.set_attn_implementation(impl.removeprefix("hf-"))
        if impl in ("ours", "ours-varlen"):  # one model serves both; a block sets its attention
            apply_attention(model, impl == "ours-varlen")
        if not self.ort:
            model.train(mode == "train")
        self.row_grad = self.optimizer = self.scaler = None
        if mode == "train":
            self.row_grad = row_sparse_embedding(model, world=1) if self.ours else None
            self.optimizer = build_optimizer(model, TrainConfig(), self.row_grad)
            self.scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step(self, b: Batch) -> None:
        ids, mask = b.input_ids.to(self.device), b.attention_mask.to(self.device)
        if self.ort:  # the padded batch, as numpy arrays: what an ONNX Runtime user feeds
            self.model.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
            return
        if self.mode == "infer":
            with torch.no_grad(), autocast_for(self.device, self.dtype):
                self.model(ids, mask, lengths=b.lengths) if self.ours else self.model(input_ids=ids, attention_mask=mask)
            return
        labels = b.labels.to(self.device)
        with autocast_for(self.device, self.dtype):
            loss = (self.model(ids, mask, labels, lengths=b.lengths)[1] if self.ours
                    else self.model(input_ids=ids, attention_mask=mask, labels=labels).loss)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        apply_gradients(self.model, self.optimizer, self.row_grad, self.scaler, 1.0)

    def close(self) -> None:
        if hasattr(self.optimizer, "close"):
            self.optimizer.close()
        if self.row_grad is not None:
            self.row_grad.embedding.sparse = False
        if not self.ort:
            self.model.zero_grad(set_to_none=True)
        self.optimizer = self.row_grad = None


def time_block(runner: Runner, cell: Cell, warmup: int, steps: int) -> tuple[float, int, int]:
    """(seconds, real tokens, sentences) of `steps` steps after `warmup`; the batches are cycled
    through. The clock is read once the timed device (not the current one) has finished."""
    for k in range(warmup):
        runner.step(cell.batches[k % len(cell.batches)])
    seconds, tokens, samples = 0.0, 0, 0
    for k in range(steps):
        b = cell.batches[k % len(cell.batches)]
        wait_for(runner.device)
        t0 = clock()
        runner.step(b)
        wait_for(runner.device)
        seconds += clock() - t0
        tokens += b.tokens
        samples += b.input_ids.shape[0]
    return seconds, tokens, samples


def flops_per_step(model: XLMRForTokenClassification, b: Batch, mode: str) -> float:
    """Model FLOPs of one step over the batch's real tokens (training.throughput.model_flops)."""
    return model_flops(model, b.tokens, attention_pairs(b.attention_mask), training=mode == "train")


def measure_cell(models: dict, cell: Cell, mode: str, precision: str, args, device, bar) -> list[dict]:
    """Every implementation on one cell; one result row per implementation."""
    steps = max(args.steps, len(cell.batches))  # a PAN-X block goes through all its batches
    impls = [i for i in args.impls if i in models]
    memories = {impl: PeakMemory(device) for impl in impls}
    blocks = {impl: [] for impl in impls}  # (seconds, tokens, sentences) per block
    for r in range(args.rounds):
        for impl in impls if r % 2 == 0 else reversed(impls):
            memory = memories[impl] if r == 0 else None
            if memory:
                memory.start()  # before the optimizer and its state exist
            runner = Runner(impl, models[impl], mode, DTYPES[precision], device)
            blocks[impl].append(time_block(runner, cell, args.warmup, steps))
            if memory:
                memory.stop()
            runner.close()
            bar.update(1)
    best = {impl: min(b, key=lambda block: block[0] / block[1]) for impl, b in blocks.items()}
    ours = models["ours"] if "ours" in models else next(iter(models.values()))
    flops = sum(flops_per_step(ours, cell.batches[k % len(cell.batches)], mode) for k in range(steps))
    batch, seq = cell.shape()
    rows = []
    for impl, (seconds, tokens, samples) in best.items():
        weights = weight_bytes(models[impl])
        rows.append({"mode": mode, "precision": precision, "cell": cell.name, "batch": batch, "seq": seq,
                     "impl": impl, "tokens_per_s": tokens / seconds, "samples_per_s": samples / seconds,
                     "tflops": flops / seconds / 1e12, "peak_mb": memories[impl].peak_mb(weights),
                     "seconds": seconds, "steps": steps, "blocks_tokens_per_s": [t / s for s, t, _ in blocks[impl]]})
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", nargs="+", default=None, choices=list(SIZES),
                   help="default: all three on a GPU, e5-small and xlm-roberta-base on a CPU")
    p.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    p.add_argument("--precisions", nargs="+", default=None, choices=list(DTYPES),
                   help="default: those the device computes natively")
    p.add_argument("--impls", nargs="+", default=None, choices=IMPLS,
                   help="default: ours, hf-sdpa, hf-eager; on a CPU also ours-int8, ort-fp32, ort-int8")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="default: 8 32 (GPU: 8 32 64)")
    p.add_argument("--seq-lens", nargs="+", type=int, default=None, help="default: 32 128 (GPU: 128 256 512)")
    p.add_argument("--ragged", action="store_true", help="each grid shape also with lengths spread from T/8 to T")
    p.add_argument("--data-dir", help="PAN-X folder: adds real German batches as a cell")
    p.add_argument("--no-grid", action="store_true", help="only the PAN-X cells (needs --data-dir)")
    p.add_argument("--panx-batches", type=int, default=8, help="PAN-X batches per cell (a block runs them all)")
    p.add_argument("--spm", type=Path, default=DEFAULT_SPM, help="SentencePiece model for the PAN-X batches")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="timed steps per block (default: 3 on a CPU, 20 on a GPU)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--output-dir", type=Path, default=Path("runs/throughput"))
    p.add_argument("--quick-peak", action="store_true", help="a small matmul for the peak (a check, not a figure)")
    p.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process instead of wall time "
                   "(CPUs; for comparing code on a machine others load: tokens/s are then per CPU second)")
    args = p.parse_args(argv)
    if args.no_grid and not args.data_dir:
        p.error("--no-grid leaves no cells without --data-dir")
    gpu = torch.device(args.device).type == "cuda"
    args.impls = args.impls or default_impls(torch.device(args.device))
    args.sizes = args.sizes or (list(DEFAULT_SIZES) if gpu else ["e5-small", "xlm-roberta-base"])
    args.batch_sizes = args.batch_sizes or ([8, 32, 64] if gpu else [8, 32])
    args.seq_lens = args.seq_lens or ([128, 256, 512] if gpu else [32, 128])
    args.steps = args.steps or (20 if gpu else 3)
    return args


def main(argv=None) -> int:
    global clock
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.cpu_time:
        clock = time.process_time
    record = provenance(__file__, sys.argv[1:] if argv is None else argv, device)
    precisions = args.precisions or supported_precisions(device)
    info = machine(device, precisions, quick=args.quick_peak)
    print(summary(record) + info["summary"])
    panx = panx_cells(args.data_dir, args.spm, args.panx_batches) if args.data_dir else {}
    vocab = min(SIZES[size]["vocab_size"] for size in args.sizes)  # random ids valid for every size
    grid = [] if args.no_grid else [(b, t) for b in args.batch_sizes for t in args.seq_lens]
    cells = {mode: [grid_cell(b, t, vocab) for b, t in grid] + [ragged_cell(b, t, vocab) for b, t in grid if args.ragged]
             + ([panx[mode]] if mode in panx else []) for mode in args.modes}
    def runs_in(mode, precision):
        return [i for i in args.impls if i not in FP32_INFERENCE_ONLY
                or (mode == "infer" and precision == "fp32" and device.type == "cpu")]

    units = len(args.sizes) * args.rounds * sum(len(cells[m]) * len(runs_in(m, p)) for m in args.modes for p in precisions)
    rows = []
    # A compiled cell that recompiles past Dynamo's limit would otherwise run eagerly, unsaid.
    with tqdm(total=units, desc="blocks", dynamic_ncols=True) as bar, \
            torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for size in args.sizes:
            ours, hf = build_models(size, device)
            models = {impl: hf if impl.startswith("hf") else ours for impl in args.impls
                      if impl not in FP32_INFERENCE_ONLY + ("ours-compiled",)}
            extra = fp32_inference_models(ours, size, args, device) if "infer" in args.modes else {}
            for precision in precisions:
                # The attention path the precision's decision sets, as training and eval.py set it.
                apply_precision(ours, decide(AMP_OF[precision], device))
                for mode in args.modes:
                    in_mode = dict(models)
                    if mode == "infer" and precision == "fp32":
                        in_mode |= extra
                    if mode == "infer" and DTYPES[precision] is not None and {"ours", "ours-varlen"} & set(models):
                        # What eval.py and the service run: Linear weights cast once (identical results).
                        cast = cast_linears_for_inference(copy.deepcopy(ours), DTYPES[precision])
                        in_mode |= {i: cast for i in ("ours", "ours-varlen") if i in models}
                    if "ours-compiled" in args.impls:
                        in_mode["ours-compiled"] = compiled_copy(in_mode.get("ours", ours))
                    for cell in cells[mode]:
                        bar.set_postfix_str(f"{size} {precision} {mode} {cell.name}")
                        rows += [r | {"size": size} for r in measure_cell(in_mode, cell, mode, precision, args, device, bar)]
                        write_reports(args.output_dir, record, info, rows, vars(args), png=False)  # partial results survive a stop
                    del in_mode
            del ours, hf, models, extra
    write_reports(args.output_dir, record, info, rows, vars(args))
    print((args.output_dir / "throughput.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
