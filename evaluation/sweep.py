"""Zero-shot sweep: one checkpoint on the PAN-X test set of every language in a folder.

Sentences of all languages are batched together by length (the model sees long and short
sentences in separate batches whatever their language), in chunks of languages so the sweep is
resumable: each language's scores go to `<out>/langs/<lang>.json`, and its word-level
predictions to `<out>/predictions/test-<lang>.tsv` (token, gold, predicted), as XTREME writes
them, so scoring can be rerun without the model. A sentence's prediction does not depend on
which other sentences share its batch: padding is masked out of attention.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from loaders.align import encode_ner
from loaders.languages import XTREME_PANX, language
from loaders.nerfiles import relabel
from loaders.panx import FEATURES, read_panx

from .predict import predict
from .reports import write_json_atomic, write_text_atomic
from .scoring import count_entities, entity_scores, tag_names


def find_test_sets(folder: Path, langs=None) -> dict[str, Path]:
    """lang -> test-<lang>.tsv in the folder: the languages asked for, or every one there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no test-set folder at {folder}")
    found = {p.name[len("test-"):-len(".tsv")]: p for p in sorted(folder.glob("test-*.tsv"))}
    if langs:
        missing = [lang for lang in langs if lang not in found]
        if missing:
            raise FileNotFoundError(f"{folder}: no test-{missing[0]}.tsv" + (f" (nor {len(missing) - 1} more)"
                                                                             if len(missing) > 1 else ""))
        found = {lang: found[lang] for lang in langs}
    if not found:
        raise FileNotFoundError(f"{folder}: no test-<lang>.tsv files")
    return found


def trained_langs(model_dir: Path) -> list[str]:
    """The training languages a run recorded in its results.json; none when it is not a run folder."""
    results = Path(model_dir) / "results.json"
    return json.loads(results.read_text())["config"]["langs"] if results.is_file() else []


COLUMNS = ("input_ids", "labels", "word_ids", "word_heads", "word_glued", "ner_tags")


def encode_test_set(path: Path, lang: str, tokenizer, max_length: int = 512, unspaced: str = "runs",
                    labels: list[str] | None = None) -> dict[str, list]:
    """A test file's words and gold tags (in the ids of the model's `labels`), encoded as
    `python eval.py` encodes them."""
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict(read_panx(path, lang), features=FEATURES)
    if labels is not None:
        ds = relabel(ds, labels, str(path))
    encoded = encode_ner(DatasetDict({"test": ds}), tokenizer, max_length, unspaced=unspaced)["test"]
    return {key: list(encoded[key]) for key in ("tokens",) + COLUMNS}


def score_language(lang: str, data: dict, outputs: list[dict], id2label, decode: str) -> tuple[dict, str]:
    """(scores, predictions file text) of one language from its sentences' outputs, as decoded
    by `decode`."""
    y_pred = tag_names([o["decoded"][decode] for o in outputs], id2label)
    y_true = tag_names([o["gold"] for o in outputs], id2label)
    scores = entity_scores(y_true, y_pred)
    lines = []
    for words, gold, pred in zip(data["tokens"], y_true, y_pred):
        lines += [f"{w}\t{g}\t{p}" for w, g, p in zip(words, gold, pred)] + [""]
    result = {"lang": lang, "sentences": len(outputs), "entities": count_entities(y_true), **scores}
    return result, "\n".join(lines)


def chunks(test_sets: dict[str, Path], budget: int) -> list[list[str]]:
    """Languages in groups of about `budget` sentences (estimated from file sizes: ~100 bytes a
    token line), so a chunk's batches mix languages yet a kill loses one chunk at most."""
    groups, current, size = [], [], 0
    for lang, path in test_sets.items():
        current.append(lang)
        size += path.stat().st_size
        if size >= budget * 150:  # bytes per sentence, roughly, in PAN-X files
            groups.append(current)
            current, size = [], 0
    return groups + ([current] if current else [])


def sweep(model, tokenizer, test_sets: dict[str, Path], out_dir: Path, batch_size: int = 64, device="cpu",
          amp_dtype=None, chunk_sentences: int = 40000, max_length: int = 512, progress: bool = True,
          decodes: tuple[str, ...] = ("viterbi",), unspaced: str = "runs") -> dict[str, dict]:
    """Scores per decoding and language, from each decoding's `langs/` folder where a language
    was done before. One decoding writes into out_dir; several share each forward pass and
    write into out_dir/<decoding>."""
    dirs = {d: out_dir if len(decodes) == 1 else out_dir / d for d in decodes}
    results = {d: {} for d in decodes}
    for d, folder in dirs.items():
        (folder / "langs").mkdir(parents=True, exist_ok=True)
        (folder / "predictions").mkdir(exist_ok=True)
        for lang in test_sets:
            done = folder / "langs" / f"{lang}.json"
            if done.is_file():
                results[d][lang] = json.loads(done.read_text())
    todo = {lang: p for lang, p in test_sets.items() if any(lang not in results[d] for d in decodes)}
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    for group in tqdm(chunks(todo, chunk_sentences), desc="language chunks", disable=not progress):
        t0 = time.perf_counter()
        data = {lang: encode_test_set(todo[lang], lang, tokenizer, max_length, unspaced, labels) for lang in group}
        pooled = {key: [x for lang in group for x in data[lang][key]] for key in COLUMNS}
        outputs = predict(model, pooled, batch_size, device, amp_dtype, indices=range(len(pooled["input_ids"])),
                          progress=progress, desc=" ".join(group), decode=decodes)
        start = 0
        for lang in group:
            n = len(data[lang]["input_ids"])
            for d, folder in dirs.items():
                result, predictions = score_language(lang, data[lang], outputs[start:start + n],
                                                     model.config.id2label, d)
                result["seconds"] = (time.perf_counter() - t0) * n / len(outputs)  # the chunk's time, shared by size
                write_text_atomic(folder / "predictions" / f"test-{lang}.tsv", predictions)
                write_json_atomic(folder / "langs" / f"{lang}.json", result)
                results[d][lang] = result
            start += n
    return {d: {lang: results[d][lang] for lang in test_sets} for d in decodes}


def summarise(results: dict[str, dict], train_langs=()) -> dict:
    """Rows sorted by F1 with each language's script and family, the means, and the means by
    script and by family."""
    rows = sorted(({**r, "lang": lang, "name": language(lang).name, "script": language(lang).script,
                    "family": language(lang).family, "trained_on": lang in train_langs}
                   for lang, r in results.items()), key=lambda r: -r["f1"])
    langs = set(results)
    xtreme = [lang for lang in XTREME_PANX if lang in langs]
    summary = {"languages": len(rows), "mean_f1": sum(r["f1"] for r in rows) / max(len(rows), 1),
               "train_langs": list(train_langs), "rows": rows}
    if xtreme:
        summary["xtreme_mean_f1"] = sum(results[lang]["f1"] for lang in xtreme) / len(xtreme)
        summary["xtreme_languages"] = len(xtreme)
        summary["xtreme_missing"] = [lang for lang in XTREME_PANX if lang not in langs]
    for key in ("script", "family"):
        groups: dict[str, list] = {}
        for r in rows:
            groups.setdefault(r[key], []).append(r)
        summary[f"by_{key}"] = sorted(({key: g, "languages": [r["lang"] for r in members],
                                        "mean_f1": sum(r["f1"] for r in members) / len(members)}
                                       for g, members in groups.items()), key=lambda r: -r["mean_f1"])
    return summary


def mean_line(summary: dict) -> str:
    line = f"mean F1 over the {summary['languages']} languages: {summary['mean_f1']:.3f}"
    if "xtreme_mean_f1" in summary and summary["xtreme_languages"] != summary["languages"]:
        line += f"; over the {summary['xtreme_languages']} XTREME languages among them: {summary['xtreme_mean_f1']:.3f}"
    if summary.get("xtreme_missing"):
        line += f" (XTREME's {len(XTREME_PANX)} without {', '.join(summary['xtreme_missing'])})"
    return line


def sweep_markdown(summary: dict) -> str:
    trained = ", ".join(summary["train_langs"]) or "not recorded"
    lines = [f"Trained on: {trained} (marked *). " + mean_line(summary) + ".", "",
             "| lang | language | script | family | sentences | entities | precision | recall | F1 |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        lines.append(f"| {r['lang']}{'*' if r['trained_on'] else ''} | {r['name']} | {r['script']} | {r['family']} "
                     f"| {r['sentences']} | {r['entities']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
    for key in ("family", "script"):
        lines += ["", f"| {key} | languages | mean F1 |", "|---|---|---:|"]
        lines += [f"| {g[key]} | {' '.join(g['languages'])} | {g['mean_f1']:.3f} |" for g in summary[f"by_{key}"]]
    return "\n".join(lines) + "\n"


def sweep_csv(summary: dict) -> str:
    cols = ["lang", "name", "script", "family", "trained_on", "sentences", "entities", "precision", "recall", "f1"]
    rows = [",".join(cols)]
    rows += [",".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols) for r in summary["rows"]]
    return "\n".join(rows) + "\n"


def write_sweep_reports(summary: dict, out_dir: Path) -> None:
    """sweep.md, sweep.csv, sweep.json and the bar chart sweep.png (with matplotlib)."""
    from .plots import plot_language_bars

    write_text_atomic(out_dir / "sweep.md", sweep_markdown(summary))
    write_text_atomic(out_dir / "sweep.csv", sweep_csv(summary))
    write_json_atomic(out_dir / "sweep.json", summary)
    plot_language_bars(out_dir / "sweep.png", summary["rows"], summary["mean_f1"])


def side_by_side(summaries: dict[str, dict]) -> str:
    """One Markdown table, a column of F1 per sweep (named by its key), languages sorted by the
    first sweep's F1, the means last."""
    names = list(summaries)
    f1 = {name: {r["lang"]: r for r in s["rows"]} for name, s in summaries.items()}
    order = [r["lang"] for r in summaries[names[0]]["rows"]]
    order += sorted({lang for name in names for lang in f1[name]} - set(order))
    lines = ["| lang | script | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for lang in order:
        cells = [(f"{f1[n][lang]['f1']:.3f}" + ("*" if f1[n][lang]["trained_on"] else "")) if lang in f1[n] else "-"
                 for n in names]
        lines.append(f"| {lang} | {language(lang).script} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{summaries[n]['mean_f1']:.3f}**" for n in names) + " |")
    return "\n".join(lines) + "\n"
