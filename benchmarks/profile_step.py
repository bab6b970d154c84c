"""Where the time of a training step and of an inference batch goes, by kind of work.

    python -m benchmarks.profile_step --data-dir ../shared/data/panx                # e5-small, --amp auto
    python -m benchmarks.profile_step --data-dir ../shared/data/panx --amp off --size xlm-roberta-base

The steps are the ones `benchmarks/throughput.py` times for `ours` (its Runner: the training
loop's forward, loss, backward and `training.recipe.apply_gradients`; inference as eval.py runs
it), on real German PAN-X batches: length-grouped batches of 24 training sentences, length-sorted
batches of 64 validation sentences. Under `torch.profiler`, each step is cut into phases
(forward, backward, clipping, optimizer) by `record_function` ranges, and every operator's own
time (its self time: what it spent outside the operators it called) is put in one kind:

- matrix products: mm, addmm, bmm, linear and oneDNN's matmul kernels;
- attention: the fused attention kernels and, where attention runs by matrix products, its
  softmax (the products themselves count as matrix products);
- elementwise and normalisation: LayerNorm, GELU, dropout, adds, casts, copies, masks;
- embedding, loss: the look-up and its row gradient, the cross-entropy;
- optimizer, clipping: every operator inside those phases;
- host: the step's wall time that no operator accounts for (Python, dispatch, the collator).

The profiler's own cost lands in "host", so host is an upper bound; the wall time per step
without the profiler is printed beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd.profiler import record_function

import training.recipe as recipe
from benchmarks.provenance import provenance, summary
from benchmarks.throughput import AMP_OF, SIZES, Runner, build_models
from benchmarks.throughput_cells import panx_cells
from runtime.precision import apply_precision, cast_linears_for_inference, decide

PHASES = ("forward", "backward", "clipping", "optimizer")
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul", "aten::_addmm_activation",
          "mkldnn", "onednn", "aten::baddbmm")
ATTENTION = ("scaled_dot_product", "flash_attention", "efficient_attention", "softmax")
EMBEDDING = ("embedding", "index_select", "index_add", "index_put", "unique", "_sparse")
LOSS = ("cross_entropy", "nll_loss", "log_softmax")


def kind_of(op: str, phase: str | None) -> str:
    """The kind of work of one operator, from its name and the phase it ran in."""
    if phase in ("clipping", "optimizer"):
        return phase
    name = op.lower()
    for kind, marks in (("attention", ATTENTION), ("matrix products", MATMUL), ("embedding", EMBEDDING),
                        ("loss", LOSS)):
        if any(m in name for m in marks):
            return kind
    return "elementwise and normalisation"


def phase_of(event) -> str | None:
    """The nearest enclosing phase range of a profiler event (None outside every phase)."""
    e = event.cpu_parent
    while e is not None:
        if e.name.startswith("phase:"):
            return e.name.removeprefix("phase:")
        e = e.cpu_parent
    return None


class PhasedRunner(Runner):
    """`Runner.step` with each phase in a `record_function` range, and the wall time of each
    (forward, backward, the update) added up in `wall`, so that the phases are also known
    without the profiler (which slows some operators more than others)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wall: dict[str, float] = defaultdict(float)

    def step(self, b) -> None:
        t0 = time.perf_counter()
        if self.mode == "infer":
            with record_function("phase:forward"):
                super().step(b)
            self.wall["forward"] += time.perf_counter() - t0
            return
        ids, mask, labels = b.input_ids.to(self.device), b.attention_mask.to(self.device), b.labels.to(self.device)
        with record_function("phase:forward"), torch.autocast(self.device.type, dtype=self.dtype,
                                                             enabled=self.dtype is not None):
            loss = self.model(ids, mask, labels, lengths=b.lengths)[1]
        t1 = time.perf_counter()
        with record_function("phase:backward"):
            loss.backward()
        t2 = time.perf_counter()
        recipe.apply_gradients(self.model, self.optimizer, self.row_grad, self.scaler, 1.0)
        t3 = time.perf_counter()
        for phase, seconds in (("forward", t1 - t0), ("backward", t2 - t1), ("clipping and optimizer", t3 - t2)):
            self.wall[phase] += seconds


def phased(fn, name):
    def wrapped(*args, **kwargs):
        with record_function(f"phase:{name}"):
            return fn(*args, **kwargs)
    return wrapped


def breakdown(runner: Runner, batches, warmup: int, steps: int) -> tuple[dict[str, float], dict[tuple, float], float, float]:
    """({kind: ms per step}, {(kind, operator): ms per step}, wall ms per step under the profiler,
    wall ms per step without it)."""
    for k in range(warmup):
        runner.step(batches[k % len(batches)])
    runner.wall.clear()
    t0 = time.perf_counter()
    for k in range(steps):
        runner.step(batches[k % len(batches)])
    plain = (time.perf_counter() - t0) / steps * 1e3
    runner.phases = {phase: s / steps * 1e3 for phase, s in runner.wall.items()}  # ms per step, unprofiled
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for k in range(steps):
            runner.step(batches[k % len(batches)])
        wall = (time.perf_counter() - t0) / steps * 1e3
    kinds: dict[str, float] = defaultdict(float)
    ops: dict[tuple, float] = defaultdict(float)
    main_thread = prof.events()[0].thread
    for e in prof.events():
        if e.name.startswith("phase:") or e.name.startswith("Optimizer.") or not e.name.startswith("aten::"):
            continue  # ranges, not work; a range's operators are counted one by one
        if e.thread != main_thread:
            continue  # intra-op worker threads: their time is inside the caller's operator
        kind = kind_of(e.name, phase_of(e))
        kinds[kind] += e.self_cpu_time_total / 1e3 / steps
        ops[(kind, e.name)] += e.self_cpu_time_total / 1e3 / steps
    kinds["host"] = max(0.0, wall - sum(kinds.values()))
    return dict(kinds), dict(ops), wall, plain


def table(title: str, phases: dict[str, float], kinds: dict[str, float], ops: dict[tuple, float], wall: float,
          plain: float, top: int = 12) -> str:
    by_phase = ", ".join(f"{phase} {ms:.1f}" for phase, ms in phases.items())
    rows = [f"### {title}", "", f"{plain:.1f} ms per step without the profiler ({by_phase}), {wall:.1f} ms under it",
            "",
            "| kind | ms per step | share |", "|---|---:|---:|"]
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        rows.append(f"| {kind} | {ms:.1f} | {100 * ms / wall:.0f}% |")
    rows += ["", f"The {top} operators with the most own time:", "", "| operator | kind | ms per step |", "|---|---|---:|"]
    for (kind, op), ms in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
        rows.append(f"| `{op}` | {kind} | {ms:.1f} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="PAN-X folder (the German batches)")
    p.add_argument("--size", default="e5-small", choices=list(SIZES))
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"], help="as train_loop.py's --amp")
    p.add_argument("--spm", type=Path, default=Path(__file__).resolve().parents[2] / "shared/models/xlm-roberta-tokenizer/sentencepiece.bpe.model")
    p.add_argument("--batches", type=int, default=8, help="PAN-X batches per mode")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--output", type=Path, default=Path("runs/profile/profile.md"))
    args = p.parse_args(argv)
    device = torch.device("cpu")
    record = provenance(__file__, sys.argv[1:] if argv is None else argv, device)
    print(summary(record))
    cells = panx_cells(args.data_dir, args.spm, args.batches)
    ours, _ = build_models(args.size, device)
    precision = decide(args.amp, device)
    apply_precision(ours, precision)
    print(f"precision: {precision.why}")
    recipe.clip_grad_norm_rows = phased(recipe.clip_grad_norm_rows, "clipping")
    recipe.torch.nn.utils.clip_grad_norm_ = phased(torch.nn.utils.clip_grad_norm_, "clipping")
    out = [f"## {args.size}, {precision.why}", ""]
    train = PhasedRunner("ours", ours, "train", precision.dtype, device)
    train.optimizer.step = phased(train.optimizer.step, "optimizer")
    measured = breakdown(train, cells["train"].batches, args.warmup, args.steps)
    out.append(table("Training step (24 German sentences, length-grouped)", train.phases, *measured))
    train.close()
    infer_model = cast_linears_for_inference(ours, precision.dtype) if precision.dtype else ours
    infer = PhasedRunner("ours", infer_model, "infer", precision.dtype, device)
    measured = breakdown(infer, cells["infer"].batches, args.warmup, args.steps)
    out.append(table("Inference batch (64 German sentences, length-sorted)", infer.phases, *measured))
    text = "\n".join(out)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(summary(record) + "\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
