"""Evaluate a fine-tuned checkpoint on PAN-X test sets: entity-level F1 per language.

    python eval.py --model runs/de --langs de fr it en --data-dir ../shared/data/panx

The prediction code here is the one the training loop uses for its validation F1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from tqdm.auto import tqdm

from loaders.align import IGNORE
from loaders.batching import sorted_batches
from loaders.collate import PaddingCollator


def to_seqeval(pred_ids, label_ids, id2label: dict[int, str]) -> tuple[list[list[str]], list[list[str]]]:
    """Predicted and gold tag sequences for seqeval, keeping only the labelled positions (a word's
    first sub-word): positions labelled -100 are neither scored nor shown to seqeval."""
    y_pred, y_true = [], []
    for preds, labels in zip(pred_ids, label_ids):
        keep = [(int(p), int(l)) for p, l in zip(preds, labels) if l != IGNORE]
        y_pred.append([id2label[p] for p, _ in keep])
        y_true.append([id2label[l] for _, l in keep])
    return y_pred, y_true


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


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
    collate = PaddingCollator()
    out = [None] * len(indices)
    for positions in tqdm(batches, desc=desc, disable=not progress, leave=False):
        batch = collate([{"input_ids": ids[p], "labels": labels[p]} for p in positions])
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_for(device, amp_dtype):
            logits, _ = model(batch["input_ids"], batch["attention_mask"])
        logits = logits.float()  # (B, T, C)
        token_loss = F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=IGNORE,
                                     reduction="none")  # (B, T)
        preds, token_loss, gold = (logits.argmax(-1).cpu().numpy(), token_loss.cpu().numpy(),
                                               batch["labels"].cpu().numpy())
        for row, p in enumerate(positions):
            n = len(ids[p])
            out[p] = {"pred": preds[row, :n], "loss": token_loss[row, :n], "labels": gold[row, :n]}
    return out


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
    result = {
        "loss": sum(r[3] for r in rows) / max(n_tokens, 1),
        "f1": f1_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred),
        "recall": recall_score(y_true, y_pred),
        "sentences": len(rows),
    }
    if report:
        result["report"] = classification_report(y_true, y_pred, output_dict=True)
        result["report_text"] = classification_report(y_true, y_pred, digits=3)
    return result


def f1_table(scores: dict[str, float], label: str = "F1") -> str:
    langs = list(scores)
    head = "| " + " | ".join([label] + langs) + " |"
    sep = "|" + "---|" * (len(langs) + 1)
    row = "| test | " + " | ".join(f"{scores[lang]:.3f}" for lang in langs) + " |"
    return "\n".join([head, sep, row])


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# Command line

def amp_dtype_for(name: str, device: torch.device):
    if name == "off":
        return None
    if name == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]


def cmd_evaluate(args) -> int:
    from loaders.align import encode_panx
    from loaders.panx import PanxError, check_lang, load_panx, swiss_corpus, SWISS_FRACTIONS
    from xlmr.tokenizer import XLMRTokenizer
    from xlmr.weights import CheckpointError, load_model

    try:
        for lang in args.langs:
            check_lang(lang)
        model = load_model(args.model)
        tokenizer = XLMRTokenizer(Path(args.model) / "sentencepiece.bpe.model" if args.tokenizer is None else args.tokenizer)
    except (CheckpointError, PanxError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    model.to(device)
    amp = amp_dtype_for(args.amp, device)
    results = {"model": str(args.model), "split": args.split, "full_splits": args.full_splits, "langs": {}}
    for lang in args.langs:
        try:
            if args.full_splits or lang not in SWISS_FRACTIONS:
                ds = load_panx(lang, args.data_dir)
            else:
                ds = swiss_corpus(args.data_dir, [lang])[lang]
        except (PanxError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        encoded = encode_panx(ds, tokenizer, max_length=args.max_length)[args.split]
        t0 = time.perf_counter()
        r = evaluate(model, encoded, model.config.id2label, args.batch_size, device, amp, progress=True,
                     desc=f"{lang} {args.split}", report=True)
        r["seconds"] = time.perf_counter() - t0
        print(f"\n== {lang} ({r['sentences']} sentences): F1 {r['f1']:.4f}\n{r['report_text']}")
        results["langs"][lang] = r
    print(f1_table({lang: r["f1"] for lang, r in results["langs"].items()}))
    if args.output:
        write_json_atomic(Path(args.output), results)
        print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="our checkpoint folder (as written by train_loop.py)")
    p.add_argument("--langs", nargs="+", default=["de", "fr", "it", "en"])
    p.add_argument("--data-dir", default=None, help="PAN-X folder (default: $PANX_DATA_DIR, else the hub)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--full-splits", action="store_true", help="whole PAN-X splits instead of the Swiss-mix subsets")
    p.add_argument("--tokenizer", default=None, help="sentencepiece.bpe.model (default: the one in --model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--output", default=None, help="write the scores and reports to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return cmd_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
