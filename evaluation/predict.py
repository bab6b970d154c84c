"""The model over an encoded dataset, without gradients: tags, token losses, and their scores.

The training loop's validation and test F1 come from `evaluate` here, so a checkpoint scores the
same in training and in `python eval.py`.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from loaders.align import IGNORE
from loaders.batching import sorted_batches
from loaders.collate import PaddingCollator
from xlmr.compile import bucket_multiple
from xlmr.precision import autocast_for

from .scoring import entity_scores, to_seqeval


@torch.no_grad()
def predict(model, dataset, batch_size: int = 64, device="cpu", amp_dtype=None, indices=None,
            progress: bool = False, desc: str = "predict") -> list[dict]:
    """Per sentence (in `indices` order, default all): predicted tag ids, token losses (0 where
    the label is -100) and gold labels. Batches are sorted by length so little is padded."""
    device = torch.device(device)
    model.eval()
    indices = list(range(len(dataset))) if indices is None else list(indices)
    # Read the columns once: row-by-row access to an Arrow table is slow.
    all_ids, all_labels = list(dataset["input_ids"]), list(dataset["labels"])
    ids = [all_ids[i] for i in indices]
    labels = [all_labels[i] for i in indices]
    batches = sorted_batches([len(x) for x in ids], batch_size)
    collate = PaddingCollator(pad_to_multiple_of=bucket_multiple(model))  # compiled: a few lengths only
    out = [None] * len(indices)
    # One autocast region over all batches: it casts each fp32 weight once and reuses the cast.
    with autocast_for(device, amp_dtype):
        for positions in tqdm(batches, desc=desc, disable=not progress, leave=False):
            _predict_batch(model, [ids[p] for p in positions], [labels[p] for p in positions], collate, device,
                           out, positions)
    return out


def _predict_batch(model, ids, labels, collate, device, out, positions) -> None:
    """One batch of sentences (token ids, labels); results into out[positions]."""
    batch = collate([{"input_ids": i, "labels": l} for i, l in zip(ids, labels)])
    batch = {k: v.to(device) for k, v in batch.items()}
    logits, _ = model(batch["input_ids"], batch["attention_mask"])
    with torch.autocast(device.type, enabled=False):  # the loss and argmax in fp32
        logits = logits.float()  # (B, T, C)
        token_loss = F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=IGNORE,
                                     reduction="none")  # (B, T)
        preds, token_loss, gold = (logits.argmax(-1).cpu().numpy(), token_loss.cpu().numpy(),
                                   batch["labels"].cpu().numpy())
    for row, p in enumerate(positions):
        n = len(ids[row])
        out[p] = {"pred": preds[row, :n], "loss": token_loss[row, :n], "labels": gold[row, :n]}


def _gather(obj):
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def evaluate(model, dataset, id2label, batch_size: int = 64, device="cpu", amp_dtype=None,
             progress: bool = False, desc: str = "eval", report: bool = False) -> dict:
    """Entity-level P/R/F1 (seqeval) and the mean loss over labelled tokens. Under
    torch.distributed each rank predicts a share and the shares are gathered, so every rank gets
    the F1 of the whole set."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    mine = list(range(rank, len(dataset), world))
    outputs = predict(model, dataset, batch_size, device, amp_dtype, mine, progress and rank == 0, desc)
    shares = _gather([(i, o["pred"], o["labels"], float(o["loss"].sum())) for i, o in zip(mine, outputs)])
    rows = sorted((r for share in shares for r in share), key=lambda r: r[0])
    y_pred, y_true = to_seqeval([r[1] for r in rows], [r[2] for r in rows], id2label)
    n_tokens = sum(len(t) for t in y_true)
    scores = entity_scores(y_true, y_pred, report)
    return {"loss": sum(r[3] for r in rows) / max(n_tokens, 1), "f1": scores.pop("f1"),
            "precision": scores.pop("precision"), "recall": scores.pop("recall"), "sentences": len(rows), **scores}
