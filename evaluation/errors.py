"""Error analysis: where a model's loss goes, by token, by label and by sentence.

`error_analysis` predicts a split once and writes, to one folder: token_losses.csv (every
labelled token), loss_by_token.csv, loss_by_label.csv, confusion.csv and confusion.png, the
worst sentences as sentences.json, and the whole text report as report.txt.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from loaders.align import IGNORE

from .plots import plot_confusion
from .predict import predict
from .reports import format_rows, write_csv_atomic, write_json_atomic, write_text_atomic


def token_losses(outputs: list[dict], all_ids: list[list[int]], tokenizer, id2label) -> list[dict]:
    """One row per labelled token (a word's first sub-word): sentence, position, token, gold
    label, predicted label and its cross-entropy."""
    rows = []
    for s, (o, ids) in enumerate(zip(outputs, all_ids)):
        pieces = tokenizer.convert_ids_to_tokens(ids)
        for t, (label, pred, loss) in enumerate(zip(o["labels"], o["pred"], o["loss"])):
            if label != IGNORE:
                rows.append({"sentence": s, "position": t, "token": pieces[t], "label": id2label[int(label)],
                             "pred": id2label[int(pred)], "loss": float(loss)})
    return rows


def loss_by(rows: list[dict], key: str) -> list[dict]:
    """Rows grouped by `key` with count, mean and summed loss, largest sum first."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r["loss"])
    table = [{key: k, "count": len(v), "mean": sum(v) / len(v), "sum": sum(v)} for k, v in groups.items()]
    return sorted(table, key=lambda r: -r["sum"])


def confusion_matrix(rows: list[dict], tags) -> np.ndarray:
    """(len(tags), len(tags)) counts, rows = gold tag, columns = predicted tag."""
    index = {t: i for i, t in enumerate(tags)}
    m = np.zeros((len(tags), len(tags)), dtype=np.int64)
    for r in rows:
        m[index[r["label"]], index[r["pred"]]] += 1
    return m


def normalise_rows(m: np.ndarray) -> np.ndarray:
    totals = m.sum(axis=1, keepdims=True)
    return np.divide(m, totals, out=np.zeros(m.shape, dtype=float), where=totals > 0)


def sentence_view(outputs, all_ids: list[list[int]], tokenizer, id2label, s: int) -> list[dict]:
    """Every token of sentence s with its gold label ('IGN' for -100), prediction and loss."""
    o, pieces = outputs[s], tokenizer.convert_ids_to_tokens(all_ids[s])
    return [{"token": tok, "label": "IGN" if int(l) == IGNORE else id2label[int(l)], "pred": id2label[int(p)],
             "loss": float(x)} for tok, l, p, x in zip(pieces, o["labels"], o["pred"], o["loss"])]


def _sentence_blocks(sentences: list[int], outputs, all_ids, tokenizer, id2label) -> tuple[list[dict], list[str]]:
    """The given sentences as JSON records and as report text, one block each."""
    records, text = [], []
    for s in sentences:
        view = sentence_view(outputs, all_ids, tokenizer, id2label, s)
        loss = float(outputs[s]["loss"].sum())
        records.append({"sentence": s, "loss": loss, "tokens": view})
        text.append(f"\n-- sentence {s}, total loss {loss:.3f}")
        text.append(format_rows(view, ["token", "label", "pred", "loss"]))
    return records, text


def error_analysis(model, dataset, tokenizer, out_dir: Path, top: int = 10, tokens_of_interest=(),
                   batch_size: int = 64, device="cpu", amp_dtype=None, decode: str = "viterbi") -> str:
    """Writes the tables, the plot and the worst sentences to out_dir, and returns the text
    report (also written as report.txt)."""
    id2label = model.config.id2label
    tags = [id2label[i] for i in range(len(id2label))]
    outputs = predict(model, dataset, batch_size, device, amp_dtype, progress=True, desc="predict", decode=decode)
    all_ids = list(dataset["input_ids"])  # read the column once: row-by-row Arrow access is slow
    rows = token_losses(outputs, all_ids, tokenizer, id2label)
    by_token, by_label = loss_by(rows, "token"), sorted(loss_by(rows, "label"), key=lambda r: -r["mean"])
    norm = normalise_rows(confusion_matrix(rows, tags))
    norm_rows = [dict(gold=t, **{p: float(norm[i, j]) for j, p in enumerate(tags)}) for i, t in enumerate(tags)]
    by_total = sorted(range(len(outputs)), key=lambda s: -float(outputs[s]["loss"].sum()))

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(out_dir / "token_losses.csv", rows, ["sentence", "position", "token", "label", "pred", "loss"])
    write_csv_atomic(out_dir / "loss_by_token.csv", by_token, ["token", "count", "mean", "sum"])
    write_csv_atomic(out_dir / "loss_by_label.csv", by_label, ["label", "count", "mean", "sum"])
    write_csv_atomic(out_dir / "confusion.csv", [{k: v if k == "gold" else f"{v:.4f}" for k, v in r.items()}
                                                 for r in norm_rows], ["gold", *tags])
    plot_confusion(out_dir / "confusion.png", norm, tags)

    report = [f"{len(rows)} labelled tokens in {len(outputs)} sentences; mean loss "
              f"{sum(r['loss'] for r in rows) / max(len(rows), 1):.4f}",
              f"\n== tokens by summed loss (top {top})", format_rows(by_token[:top], ["token", "count", "mean", "sum"]),
              "\n== labels by mean loss", format_rows(by_label, ["label", "count", "mean", "sum"]),
              "\n== confusion matrix, normalised over each gold tag (rows: gold, columns: predicted)",
              format_rows(norm_rows, ["gold", *tags]),
              f"\n== the {top} sentences with the highest total loss"]
    records, text = _sentence_blocks(by_total[:top], outputs, all_ids, tokenizer, id2label)
    sentences = {"top_loss": records, "with_token": {}}
    report += text
    for token in tokens_of_interest:
        target = tokenizer.convert_tokens_to_ids([token])[0]
        having = [s for s in by_total if target in all_ids[s]]
        report.append(f"\n== sentences containing {token!r}: {len(having)}; the {min(top, len(having))} "
                      f"with the highest loss")
        sentences["with_token"][token], text = _sentence_blocks(having[:top], outputs, all_ids, tokenizer, id2label)
        report += text
    write_json_atomic(out_dir / "sentences.json", sentences)
    text = "\n".join(report) + "\n"
    write_text_atomic(out_dir / "report.txt", text)
    return text
