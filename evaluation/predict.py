"""The model over an encoded dataset, without gradients: word tags, token losses, and their scores.

Each word is decoded from the scores of the token that carries its label (`word_heads`), by the
head's one decoding (constrained IOB2 Viterbi by default, the book's argmax on request), and
scored against the words' gold tags, as XTREME scores PAN-X: every word once, whatever the
tokenizer did to it. The training loop's validation and test F1 come from `evaluate` here, so a
checkpoint scores the same in training and in `python eval.py`.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from loaders.align import IGNORE
from loaders.batching import sorted_batches
from loaders.collate import PaddingCollator
from runtime.compile import bucket_multiple
from runtime.devices import pins_batches
from runtime.precision import autocast_for
from xlmr import alignment
from xlmr.decoding import inside_ids

from .scoring import entity_scores, tag_names


@torch.no_grad()
def predict(model, dataset, batch_size: int = 64, device="cpu", amp_dtype=None, indices=None,
            progress: bool = False, desc: str = "predict", decode: str | tuple[str, ...] = "viterbi",
            keep_scores: bool = False) -> list[dict]:
    """Per sentence (in `indices` order, default all): "words" (decoded tag id per word), "gold"
    (the words' gold tag ids), and per token "pred" (the decoded tag where a word's label sits,
    the argmax elsewhere), "loss" (0 where the label is -100) and "labels". Batches are sorted by
    length so little is padded. A dataset without word_heads (token ids and labels only) has
    its labelled tokens for words. `decode` may name several decodings, to compare them on one
    forward pass: "words" and "pred" follow the first, and "decoded" maps each to its words.
    `keep_scores` adds the decoded words' "scores" (n, C), "glued", and "spread" (what
    xlmr.alignment.spread_to_words needs besides the tags), to decode them again another way."""
    device = torch.device(device)
    model.eval()
    indices = list(range(len(dataset))) if indices is None else list(indices)
    # Read the columns once: row-by-row access to an Arrow table is slow.
    columns = {k: list(dataset[k]) for k in ("input_ids", "labels", "word_ids", "word_heads", "word_glued", "ner_tags")
               if k in _column_names(dataset)}
    rows = [{k: v[i] for k, v in columns.items()} for i in indices]
    batches = sorted_batches([len(r["input_ids"]) for r in rows], batch_size)
    # Compiled: a few lengths only. Pinned for a GPU, so the copy to it does not wait.
    collate = PaddingCollator(pad_to_multiple_of=bucket_multiple(model), pin_memory=pins_batches(device))
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    words = _Words(inside_ids(labels), labels.index("O") if "O" in labels else 0)
    out = [None] * len(indices)
    # One autocast region over all batches: it casts each fp32 weight once and reuses the cast.
    with autocast_for(device, amp_dtype):
        for positions in tqdm(batches, desc=desc, disable=not progress, leave=False):
            batch_rows = [rows[p] for p in positions]
            results = _predict_batch(model, batch_rows, collate, device, decode, words, keep_scores)
            for p, result in zip(positions, results):
                out[p] = result
    return out


def _column_names(dataset) -> list[str]:
    return list(dataset.column_names) if hasattr(dataset, "column_names") else list(dataset)


class _Words:
    """A dataset row's words as xlmr/alignment.py places them among its tokens. A dataset
    without word_heads (token ids and labels only) has its labelled tokens for words."""

    def __init__(self, inside: list[int], outside: int):
        self.inside, self.outside = inside, outside

    @staticmethod
    def heads(row) -> list[int]:
        if "word_heads" in row:
            return alignment.head_positions(row["word_ids"], row["word_heads"])
        return alignment.labelled_tokens(row["labels"], IGNORE)

    @staticmethod
    def glued(row) -> list[bool]:
        """For each head, whether its piece has no '▁' (False where the dataset does not say)."""
        if "word_glued" in row and "word_heads" in row:
            return alignment.head_glued(row["word_ids"], row["word_heads"], row["word_glued"])
        return [False] * len(_Words.heads(row))

    def tags(self, row, head_tags: list[int]) -> list[int]:
        if "word_heads" in row:
            return alignment.spread_to_words(head_tags, row["word_ids"], row["word_heads"], self.inside, self.outside)
        return head_tags

    @staticmethod
    def gold(row) -> list[int]:
        if "ner_tags" in row:
            return list(row["ner_tags"])
        return [label for label in row["labels"] if label != IGNORE]


def _predict_batch(model, rows, collate, device, decode, words: _Words, keep_scores: bool = False) -> list[dict]:
    """One batch of sentences; a result per sentence. The host already knows the lengths and the
    labels; the scores come back from the device in one copy."""
    batch = collate([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    lengths = [len(r["input_ids"]) for r in rows]
    on_device = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    logits, _ = model(on_device["input_ids"], on_device["attention_mask"], lengths=lengths)
    with torch.autocast(device.type, enabled=False):  # the loss and decoding in fp32
        logits = logits.float()  # (B, T, C)
        token_loss = model.loss(logits, on_device["labels"], reduction="none")  # (B, T)
        scores = torch.cat([logits.log_softmax(-1), token_loss[..., None]], dim=-1).cpu()  # (B, T, C + 1)
    log_probs, token_loss = scores[..., :-1], scores[..., -1]  # (B, T, C), (B, T)
    heads = [words.heads(r) for r in rows]
    methods = (decode,) if isinstance(decode, str) else tuple(decode)
    scores = [log_probs[b, h] for b, h in enumerate(heads)]  # (n_heads, C) per sentence
    glued = [words.glued(r) for r in rows]
    decoded = {m: model.decode(scores, m, glued) for m in methods}
    first = decoded[methods[0]]
    argmax = log_probs.argmax(-1)  # (B, T)
    out = []
    for b, r in enumerate(rows):
        n = lengths[b]
        pred = argmax[b, :n].clone()
        pred[heads[b]] = torch.tensor(first[b], dtype=torch.long)
        by_method = {m: words.tags(r, d[b]) for m, d in decoded.items()}
        out.append({"words": by_method[methods[0]], "decoded": by_method, "gold": words.gold(r), "pred": pred.numpy(),
                    "loss": token_loss[b, :n].numpy(), "labels": batch["labels"][b, :n].numpy()})
        if keep_scores:
            out[-1] |= {"scores": scores[b], "glued": glued[b],
                        "spread": (r["word_ids"], r["word_heads"]) if "word_heads" in r else None}
    return out


def _gather(obj):
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def evaluate(model, dataset, id2label, batch_size: int = 64, device="cpu", amp_dtype=None,
             progress: bool = False, desc: str = "eval", report: bool = False, decode: str = "viterbi") -> dict:
    """Entity-level P/R/F1 (seqeval) over words and the mean loss over labelled tokens. Under
    torch.distributed each rank predicts a share and the shares are gathered, so every rank gets
    the F1 of the whole set."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    mine = list(range(rank, len(dataset), world))
    outputs = predict(model, dataset, batch_size, device, amp_dtype, mine, progress and rank == 0, desc, decode)
    shares = _gather([(i, o["words"], o["gold"], float(o["loss"].sum()), int((o["labels"] != IGNORE).sum()))
                      for i, o in zip(mine, outputs)])
    rows = sorted((r for share in shares for r in share), key=lambda r: r[0])
    y_pred, y_true = tag_names([r[1] for r in rows], id2label), tag_names([r[2] for r in rows], id2label)
    scores = entity_scores(y_true, y_pred, report)
    return {"loss": sum(r[3] for r in rows) / max(sum(r[4] for r in rows), 1), "f1": scores.pop("f1"),
            "precision": scores.pop("precision"), "recall": scores.pop("recall"), "sentences": len(rows),
            "decode": decode, **scores}
