"""Evaluate, analyse and use fine-tuned checkpoints; run the cross-lingual experiments.

    python eval.py --model runs/de --langs de fr it en --data-dir ../shared/data/panx   # test F1
    python eval.py tag --model runs/de "Jeff Dean ist ein Informatiker bei Google"
    python eval.py errors --model runs/de --langs de --data-dir ../shared/data/panx --token '▁('
    python eval.py experiments --model weights/e5-small --data-dir ../shared/data/panx [--quick]

The prediction code here is the one the training loop uses for its validation F1.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
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


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def amp_dtype_for(name: str, device: torch.device):
    if name == "off":
        return None
    if name == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]


# ---------------------------------------------------------------------------------------------
# Error analysis: where the loss goes

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


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; None, with a hint, when it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plots]'); no PNG is written", file=sys.stderr)
        return None
    return plt


def save_figure(plt, fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")  # savefig picks the format from the suffix
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def plot_confusion(path: Path, m, tags) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(tags)), tags, rotation=45)
    ax.set_yticks(range(len(tags)), tags)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(tags)):
        for j in range(len(tags)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title("normalised confusion matrix (rows sum to 1)")
    save_figure(plt, fig, path)
    return True


def sentence_view(outputs, all_ids: list[list[int]], tokenizer, id2label, s: int) -> list[dict]:
    """Every token of sentence s with its gold label ('IGN' for -100), prediction and loss."""
    o, pieces = outputs[s], tokenizer.convert_ids_to_tokens(all_ids[s])
    return [{"token": tok, "label": "IGN" if int(l) == IGNORE else id2label[int(l)], "pred": id2label[int(p)],
             "loss": float(x)} for tok, l, p, x in zip(pieces, o["labels"], o["pred"], o["loss"])]


def format_rows(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    widths = [max([len(c)] + [len(cell(r[c])) for r in rows]) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(cell(r[c]).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def write_csv_atomic(path: Path, rows: list[dict], columns: list[str]) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def error_analysis(model, dataset, tokenizer, out_dir: Path, top: int = 10, tokens_of_interest=(),
                   batch_size: int = 64, device="cpu", amp_dtype=None) -> str:
    """Writes token_losses.csv, loss_by_token.csv, loss_by_label.csv, confusion.csv/.png and
    sentences.json to out_dir, and returns the text report (also written as report.txt)."""
    id2label = model.config.id2label
    tags = [id2label[i] for i in range(len(id2label))]
    outputs = predict(model, dataset, batch_size, device, amp_dtype, progress=True, desc="predict")
    all_ids = list(dataset["input_ids"])  # read the column once: row-by-row Arrow access is slow
    rows = token_losses(outputs, all_ids, tokenizer, id2label)
    by_token, by_label = loss_by(rows, "token"), sorted(loss_by(rows, "label"), key=lambda r: -r["mean"])
    counts = confusion_matrix(rows, tags)
    norm = normalise_rows(counts)
    totals = sorted(range(len(outputs)), key=lambda s: -float(outputs[s]["loss"].sum()))

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(out_dir / "token_losses.csv", rows, ["sentence", "position", "token", "label", "pred", "loss"])
    write_csv_atomic(out_dir / "loss_by_token.csv", by_token, ["token", "count", "mean", "sum"])
    write_csv_atomic(out_dir / "loss_by_label.csv", by_label, ["label", "count", "mean", "sum"])
    write_csv_atomic(out_dir / "confusion.csv", [dict(gold=t, **{p: f"{norm[i, j]:.4f}" for j, p in enumerate(tags)})
                                                 for i, t in enumerate(tags)], ["gold", *tags])
    plot_confusion(out_dir / "confusion.png", norm, tags)

    report = [f"{len(rows)} labelled tokens in {len(outputs)} sentences; mean loss "
              f"{sum(r['loss'] for r in rows) / max(len(rows), 1):.4f}",
              f"\n== tokens by summed loss (top {top})", format_rows(by_token[:top], ["token", "count", "mean", "sum"]),
              "\n== labels by mean loss", format_rows(by_label, ["label", "count", "mean", "sum"]),
              "\n== confusion matrix, normalised over each gold tag (rows: gold, columns: predicted)",
              format_rows([dict(gold=t, **{p: float(norm[i, j]) for j, p in enumerate(tags)})
                           for i, t in enumerate(tags)], ["gold", *tags])]
    sentences = {"top_loss": [], "with_token": {}}
    report.append(f"\n== the {top} sentences with the highest total loss")
    for s in totals[:top]:
        view = sentence_view(outputs, all_ids, tokenizer, id2label, s)
        sentences["top_loss"].append({"sentence": s, "loss": float(outputs[s]["loss"].sum()), "tokens": view})
        report.append(f"\n-- sentence {s}, total loss {float(outputs[s]['loss'].sum()):.3f}")
        report.append(format_rows(view, ["token", "label", "pred", "loss"]))
    for token in tokens_of_interest:
        target = tokenizer.convert_tokens_to_ids([token])[0]
        having = [s for s in totals if target in all_ids[s]]
        sentences["with_token"][token] = []
        report.append(f"\n== sentences containing {token!r}: {len(having)}; the {min(top, len(having))} "
                      f"with the highest loss")
        for s in having[:top]:
            view = sentence_view(outputs, all_ids, tokenizer, id2label, s)
            sentences["with_token"][token].append({"sentence": s, "loss": float(outputs[s]["loss"].sum()),
                                                   "tokens": view})
            report.append(f"\n-- sentence {s}, total loss {float(outputs[s]['loss'].sum()):.3f}")
            report.append(format_rows(view, ["token", "label", "pred", "loss"]))
    write_json_atomic(out_dir / "sentences.json", sentences)
    text = "\n".join(report) + "\n"
    write_text_atomic(out_dir / "report.txt", text)
    return text


# ---------------------------------------------------------------------------------------------
# Cross-lingual experiments: the book's transfer table and the French learning curve

PANX_LANGS = ("de", "fr", "it", "en")
CURVE_SIZES = (250, 500, 1000, 2000, 4000)
EXPERIMENTS = ("de", "curve", "each", "de-fr", "all")


def experiment_plan(which=EXPERIMENTS, curve_sizes=CURVE_SIZES, langs=PANX_LANGS) -> list[dict]:
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


def run_experiment(spec: dict, root: Path, args) -> dict:
    """One training run in root/<name>: skipped when its results.json exists, resumed when it was
    interrupted, trained from scratch otherwise."""
    import train_loop

    out = root / spec["name"]
    done = out / "results.json"
    if done.is_file():
        print(f"== {spec['name']}: done before, read from {done}")
        return json.loads(done.read_text())
    epochs = args.epochs if args.epochs is not None else (1 if args.quick and spec["full_epochs"] else 3)
    argv = ["--langs", *spec["langs"], "--eval-langs", *spec["eval_langs"], "--model", args.model,
            "--epochs", str(epochs), "--seed", str(args.seed), "--amp", args.amp, "--output-dir", str(out)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if spec.get("num_samples"):
        argv += ["--num-samples", str(spec["num_samples"])]
    if args.full_splits:
        argv.append("--full-splits")
    if args.device:
        argv += ["--device", args.device]
    if args.no_progress:
        argv.append("--no-progress")
    if train_loop.resumable_state(out) is not None:
        argv += ["--resume", str(out)]
    print(f"== {spec['name']}: python train_loop.py {' '.join(argv)}")
    return train_loop.train(train_loop.build_parser().parse_args(argv))


def transfer_table(results: dict[str, dict], langs=PANX_LANGS) -> dict[str, dict[str, float | None]]:
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


def plot_learning_curve(path: Path, sizes, f1s, zero_shot: float | None) -> bool:
    """F1 on fr test against the number of French training sentences, with the zero-shot
    de -> fr F1 as a dashed line. Returns False when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, f1s, "o-", label="fine-tuned on fr")
    if zero_shot is not None:
        ax.axhline(zero_shot, linestyle="--", color="gray", label=f"zero-shot from de ({zero_shot:.3f})")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()  # the log axis would label 3x10^2 and friends between the sizes
    ax.set_xlabel("French training sentences")
    ax.set_ylabel("F1 on fr test")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(plt, fig, path)
    return True


# ---------------------------------------------------------------------------------------------
# Command line: `python eval.py [test] ...`, `tag`, `errors`, `experiments`


COMMANDS = ("test", "tag", "errors", "experiments")


def load_for_cli(model_dir: str, tokenizer_file: str | None = None):
    """The checkpoint and its tokenizer, or one line saying what is missing."""
    from xlmr.tokenizer import XLMRTokenizer
    from xlmr.weights import load_model

    model = load_model(model_dir)
    return model, XLMRTokenizer(Path(model_dir) / "sentencepiece.bpe.model" if tokenizer_file is None else tokenizer_file)


def cmd_evaluate(args) -> int:
    from loaders.align import encode_panx
    from loaders.panx import PanxError, check_lang, panx_splits
    from xlmr.weights import CheckpointError

    try:
        for lang in args.langs:
            check_lang(lang)
        model, tokenizer = load_for_cli(args.model, args.tokenizer)
    except (CheckpointError, PanxError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    model.to(device)
    amp = amp_dtype_for(args.amp, device)
    results = {"model": str(args.model), "split": args.split, "full_splits": args.full_splits, "langs": {}}
    for lang in args.langs:
        try:
            ds = panx_splits(lang, args.data_dir, args.full_splits)
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


def cmd_tag(args) -> int:
    from xlmr.tagger import Tagger
    from xlmr.weights import CheckpointError

    texts = list(args.texts)
    if args.file:
        try:
            texts += Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: cannot read {args.file}: {e}", file=sys.stderr)
            return 1
    if not texts:
        print("error: nothing to tag; give texts as arguments or --file", file=sys.stderr)
        return 1
    try:
        model, tokenizer = load_for_cli(args.model)
        device = torch.device(args.device)
        tagger = Tagger(model, tokenizer, device, amp_dtype_for(args.amp, device), args.max_length, args.stride,
                        args.batch_size)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results = tagger(texts, aggregation=args.aggregation)
    for n, r in enumerate(results):
        print(f"\n== text {n + 1}: {len(r.words)} words, {len(r.tokens)} tokens")
        if not args.no_tokens:
            rows = [{"token": t, "word": w, "tag": g, "score": s}
                    for t, w, g, s in zip(r.tokens, r.token_words, r.token_tags, r.token_scores)]
            print(format_rows(rows, ["token", "word", "tag", "score"]))
        ents = [{"type": e.type, "text": e.text, "start": e.start, "end": e.end, "score": e.score} for e in r.entities]
        print(f"\nentities ({args.aggregation}):" if ents else "\nno entities")
        if ents:
            print(format_rows(ents, ["type", "text", "start", "end", "score"]))
    if args.output:
        from dataclasses import asdict

        write_json_atomic(Path(args.output), [asdict(r) for r in results])
        print(f"wrote {args.output}")
    return 0


def cmd_errors(args) -> int:
    from datasets import DatasetDict, concatenate_datasets

    from loaders.align import encode_panx
    from loaders.panx import PanxError, check_lang, panx_splits
    from xlmr.weights import CheckpointError

    try:
        for lang in args.langs:
            check_lang(lang)
        model, tokenizer = load_for_cli(args.model)
        parts = []
        for lang in args.langs:
            ds = panx_splits(lang, args.data_dir, args.full_splits)
            parts.append(encode_panx(DatasetDict({args.split: ds[args.split]}), tokenizer)[args.split])  # only the split analysed
    except (CheckpointError, PanxError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for token in args.token:
        if tokenizer.convert_tokens_to_ids([token])[0] == tokenizer.unk_id and token != "<unk>":
            print(f"error: {token!r} is not a sub-word of the vocabulary (sub-words that start a word "
                  f"begin with '▁', e.g. '▁(')", file=sys.stderr)
            return 1
    dataset = concatenate_datasets(parts)
    device = torch.device(args.device)
    out_dir = Path(args.output_dir) if args.output_dir else Path(args.model) / "errors"
    print(error_analysis(model.to(device), dataset, tokenizer, out_dir, args.top, args.token, args.batch_size,
                         device, amp_dtype_for(args.amp, device)))
    print(f"wrote {out_dir}")
    return 0


def cmd_experiments(args) -> int:
    from train_loop import RunError
    from xlmr.weights import CheckpointError
    from loaders.panx import PanxError

    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    plan = experiment_plan(args.only, args.curve_sizes)
    print(f"{len(plan)} runs into {root}: {', '.join(r['name'] for r in plan)}"
          + (" (--quick: 1 epoch on whole language sets)" if args.quick else ""))
    results = {}
    for spec in plan:
        try:
            results[spec["name"]] = run_experiment(spec, root, args)
            if args.drop_weights and spec["name"] != "de":
                (root / spec["name"] / "model.safetensors").unlink(missing_ok=True)
        except (RunError, CheckpointError, PanxError, FileNotFoundError) as e:
            print(f"error in run {spec['name']}: {e}", file=sys.stderr)
            return 1
    # The tables also take runs finished by earlier calls with other --only choices.
    for spec in experiment_plan(EXPERIMENTS, args.curve_sizes):
        done = root / spec["name"] / "results.json"
        if spec["name"] not in results and done.is_file():
            results[spec["name"]] = json.loads(done.read_text())
    summary = {"quick": args.quick, "runs": {name: {"test_f1": r["test_f1"], "epochs": r["config"]["epochs"],
                                                     "train_sentences": r["config"]["train_sentences"],
                                                     "train_seconds": r["throughput"]["train_seconds"]}
                                              for name, r in results.items()}}
    if any(name in results for name in ("de", "all", "de-fr")):
        table = transfer_table(results)
        write_text_atomic(root / "f1_table.md", table_markdown(table) + "\n")
        write_text_atomic(root / "f1_table.csv", table_csv(table))
        summary["table"] = table
        print("\nTest F1 (rows: training languages)\n" + table_markdown(table))
    curve = [(n, results[f"fr-{n}"]["test_f1"]["fr"]) for n in args.curve_sizes if f"fr-{n}" in results]
    if curve:
        zero_shot = results["de"]["test_f1"]["fr"] if "de" in results else None
        sizes, f1s = [n for n, _ in curve], [f for _, f in curve]
        write_text_atomic(root / "learning_curve.csv", "fr_train_sentences,fr_test_f1\n"
                          + "".join(f"{n},{f:.4f}\n" for n, f in curve))
        plot_learning_curve(root / "learning_curve.png", sizes, f1s, zero_shot)
        print("\nfr learning curve: " + ", ".join(f"{n}: {f:.3f}" for n, f in curve))
        if zero_shot is not None:
            cross = crossing_point(sizes, f1s, zero_shot)
            summary["zero_shot_fr"], summary["crossing_sentences"] = zero_shot, cross
            print(f"zero-shot de -> fr: {zero_shot:.3f}; " + (
                f"fine-tuning on fr alone reaches it at ~{cross:.0f} sentences" if cross is not None
                else f"no curve point reaches it (largest: {max(sizes)} sentences)"))
    write_json_atomic(root / "experiments.json", summary)
    print(f"wrote {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(q, model_required=True):
        q.add_argument("--model", required=model_required, help="our checkpoint folder (as written by train_loop.py)")
        q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        q.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])

    t = sub.add_parser("test", help="test F1 per language and seqeval reports (the default command)")
    common(t)
    t.add_argument("--langs", nargs="+", default=list(PANX_LANGS))
    t.add_argument("--data-dir", default=None, help="PAN-X folder (default: $PANX_DATA_DIR, else the hub)")
    t.add_argument("--split", default="test", choices=["train", "validation", "test"])
    t.add_argument("--full-splits", action="store_true", help="whole PAN-X splits instead of the Swiss-mix subsets")
    t.add_argument("--tokenizer", default=None, help="sentencepiece.bpe.model (default: the one in --model)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--max-length", type=int, default=512)
    t.add_argument("--output", default=None, help="write the scores and reports to this JSON file")

    g = sub.add_parser("tag", help="tag raw text: sub-word tags and entities with character offsets")
    common(g)
    g.add_argument("texts", nargs="*", help="texts to tag (or --file)")
    g.add_argument("--file", default=None, help="a UTF-8 file with one text per line")
    g.add_argument("--aggregation", default="first", choices=["first", "average", "max"],
                   help="how a word's sub-word predictions become its tag")
    g.add_argument("--max-length", type=int, default=None,
                   help="window length in tokens (default: the model's positions); longer texts are split")
    g.add_argument("--stride", type=int, default=None, help="tokens shared by neighbouring windows (default: a quarter)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--no-tokens", action="store_true", help="print the entities only, not the token table")
    g.add_argument("--output", default=None, help="write tokens and entities to this JSON file")

    e = sub.add_parser("errors", help="error analysis on a validation split: token losses, confusion matrix")
    common(e)
    e.add_argument("--langs", nargs="+", default=["de"], help="languages whose split is analysed together")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    e.add_argument("--full-splits", action="store_true")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--top", type=int, default=10, help="rows per table and sentences shown")
    e.add_argument("--token", action="append", default=[], help="also show sentences containing this sub-word, e.g. '▁('")
    e.add_argument("--output-dir", default=None, help="where tables and the PNG go (default: <model>/errors)")

    x = sub.add_parser("experiments", help="the cross-lingual table and the French learning curve (resumable)")
    common(x)
    x.add_argument("--data-dir", default=None)
    x.add_argument("--output-dir", default="runs/experiments")
    x.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS, help="which parts to run")
    x.add_argument("--quick", action="store_true",
                   help="CPU preset: 1 epoch for runs on whole language sets (the curve keeps 3)")
    x.add_argument("--epochs", type=int, default=None, help="epochs for every run (overrides the recipe and --quick)")
    x.add_argument("--curve-sizes", type=int, nargs="+", default=list(CURVE_SIZES))
    x.add_argument("--seed", type=int, default=42)
    x.add_argument("--full-splits", action="store_true")
    x.add_argument("--no-progress", action="store_true")
    x.add_argument("--drop-weights", action="store_true",
                   help="delete each run's model.safetensors once tested (~0.45 GB each for e5-small), except de's")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["test", *argv]  # `python eval.py --model DIR --langs ...` is the test command
    args = build_parser().parse_args(argv)
    return {"test": cmd_evaluate, "tag": cmd_tag, "errors": cmd_errors, "experiments": cmd_experiments}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
