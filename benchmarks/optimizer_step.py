"""Gradient clipping and the AdamW step, dense against per-touched-row, on real German batches.

    python benchmarks/optimizer_step.py --model weights/e5-hf --data-dir ../shared/data/panx --steps 600

Both sides get the same gradients: zero on the word-embedding rows a real length-grouped batch of
the German Swiss mix does not touch, random elsewhere (a backward pass would cost the same on
both sides and is left out). The dense side is what the training loop ran before: the embedding
gradient in one (V, H) buffer, torch.nn.utils.clip_grad_norm_ and fused torch.optim.AdamW. The
row side is `clip_grad_norm_rows` and `RowAdamW`. Prints milliseconds per step for each, over
windows of steps (the rows with moments grow as training sees more of the vocabulary), and checks
that both end with the same weights.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loaders.align import encode_ner  # noqa: E402
from loaders.batching import length_grouped_batches  # noqa: E402
from loaders.panx import swiss_corpus  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.recipe import build_optimizer  # noqa: E402
from training.row_adamw import clip_grad_norm_rows  # noqa: E402
from training.embedding_grad import RowSparseGrad  # noqa: E402
from xlmr.tokenizer import XLMRTokenizer  # noqa: E402
from xlmr.weights import load_model  # noqa: E402


def batch_rows(model_dir: Path, data_dir: str, steps: int) -> list[torch.Tensor]:
    ids = encode_ner(swiss_corpus(data_dir, ["de"])["de"], XLMRTokenizer(model_dir / "sentencepiece.bpe.model"))
    ids = list(ids["train"]["input_ids"])
    batches = []
    epoch = 0
    while len(batches) < steps:
        batches += length_grouped_batches([len(x) for x in ids], 24, 42, epoch)
        epoch += 1
    return [torch.tensor(sorted({t for i in b for t in ids[i]})) for b in batches[:steps]]


def run(model, rows_per_step, sparse: bool, seed: int = 0) -> list[float]:
    """Seconds of clip + step for each step."""
    word = model.encoder.embeddings.word
    row_grad = RowSparseGrad(word) if sparse else None
    optimizer = build_optimizer(model, TrainConfig(), row_grad)
    g = torch.Generator().manual_seed(seed)
    times = []
    for rows in rows_per_step:
        for p in model.parameters():
            if p is not word.weight:
                p.grad = torch.randn(p.shape, generator=g) * 1e-3
        values = torch.randn(len(rows), word.weight.shape[1], generator=g) * 1e-3
        if sparse:
            word.weight.grad = torch.sparse_coo_tensor(rows[None], values, word.weight.shape)
            row_grad.densify()
            optimizer._activate(rows)  # what the forward's hook does in training
        else:
            grad = torch.zeros_like(word.weight)
            grad[rows] = values
            word.weight.grad = grad
        t0 = time.perf_counter()
        if sparse:
            clip_grad_norm_rows(list(model.parameters()), row_grad, 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - t0)
        optimizer.zero_grad(set_to_none=True)
        if sparse:
            row_grad.clear()
    if sparse:
        optimizer.materialize()
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="our checkpoint folder (e5-small or any)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--window", type=int, default=100)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    rows = batch_rows(args.model, args.data_dir, args.steps)
    dense_model, row_model = load_model(args.model), load_model(args.model)
    dense = run(dense_model, rows, sparse=False)
    mine = run(row_model, rows, sparse=True)
    vocab = dense_model.config.vocab_size
    seen = set()
    print("| steps | distinct rows seen by then | dense clip + AdamW | per touched row | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for start in range(0, args.steps, args.window):
        end = min(start + args.window, args.steps)
        for r in rows[start:end]:
            seen.update(r.tolist())
        d, m = (sum(x[start:end]) / (end - start) * 1000 for x in (dense, mine))
        print(f"| {start + 1}-{end} | {len(seen)} ({len(seen) / vocab:.1%}) | {d:.1f} ms | {m:.1f} ms | {d / m:.1f}x |")
    worst = max((a - b).abs().max().item() for a, b in zip(dense_model.parameters(), row_model.parameters()))
    print(f"largest weight difference after {args.steps} steps: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
