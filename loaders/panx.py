"""PAN-X (WikiANN) for one language, as a `datasets.DatasetDict`, and the Swiss language mix.

Where the data comes from, in order: the `data_dir` argument (the `--data-dir` flag), the
environment variable PANX_DATA_DIR, the Hugging Face Hub (`google/xtreme`, config `PAN-X.<lang>`,
Parquet files; HF_ENDPOINT and HF_HOME apply as for `datasets` itself).
A folder may hold XTREME's layout, `{train,dev,test}-{lang}.tsv`, or the original WikiANN layout,
`{lang}/{train,dev,test}` with `lang:token<TAB>tag` lines.

    python -m loaders.panx --langs de fr it en --data-dir DIR     # entity counts per split
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from .conll import NerDataError, read_conll
from .languages import XTREME_PANX
from .nerfiles import tag_ids

TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # PAN-X's labels, in its ClassLabel order
ENV_VAR = "PANX_DATA_DIR"
HUB_DATASET = "google/xtreme"  # on the Hub: a folder of Parquet files per config, PAN-X.<lang>/
SPLITS = {"train": "train", "validation": "dev", "test": "test"}  # DatasetDict name -> file name
SWISS_FRACTIONS = {"de": 0.629, "fr": 0.229, "it": 0.084, "en": 0.059}
SWISS_LANGS = tuple(SWISS_FRACTIONS)  # the book's four languages
PANX_LANGS = set(XTREME_PANX)  # every PAN-X language XTREME has (Thai too)
FEATURES = Features({
    "tokens": Sequence(Value("string")),
    "ner_tags": Sequence(ClassLabel(names=list(TAGS))),
    "langs": Sequence(Value("string")),
})


def read_panx(path: Path, lang: str) -> dict[str, list]:
    """Columns tokens, ner_tags (ids in TAGS' order) and langs of one PAN-X file, read by the one
    CoNLL reader with the tags as written. Every malformed line is an error naming the file and
    line: a silently skipped line would shift the labels."""
    sentences = read_conll(path, token_prefix=f"{lang}:", iob2=False)
    if not sentences.tokens:
        raise NerDataError(f"{path}: no sentences (empty file)")
    return {"tokens": sentences.tokens, "ner_tags": tag_ids(sentences, list(TAGS), whose="PAN-X's"),
            "langs": [[lang] * len(t) for t in sentences.tokens]}


def _split_file(folder: Path, lang: str, split: str) -> Path | None:
    for candidate in (folder / f"{split}-{lang}.tsv", folder / lang / split, folder / lang / f"{split}.tsv"):
        if candidate.is_file():
            return candidate
    return None


def _load_folder(folder: Path, lang: str) -> DatasetDict:
    files = {name: _split_file(folder, lang, stem) for name, stem in SPLITS.items()}
    missing = [SPLITS[name] for name, f in files.items() if f is None]
    if len(missing) == len(SPLITS):
        raise FileNotFoundError(f"{folder}: no PAN-X files for {lang!r} (looked for {{train,dev,test}}-{lang}.tsv and {lang}/{{train,dev,test}})")
    if missing:
        raise NerDataError(f"{folder}: PAN-X {lang!r} lacks the split(s) {', '.join(missing)}")
    return DatasetDict({name: Dataset.from_dict(read_panx(f, lang), features=FEATURES) for name, f in files.items()})


def _load_hub(lang: str) -> DatasetDict:
    """google/xtreme's config PAN-X.<lang>, which the Hub stores as Parquet files (no loading
    script, so `datasets` 4 and later read it). The columns are checked, the tag names in
    particular: ids in another order would train every label under another name."""
    from datasets import load_dataset

    config = f"PAN-X.{lang}"
    ds = load_dataset(HUB_DATASET, name=config)
    where = f"{HUB_DATASET} {config} on the Hugging Face Hub"
    if sorted(ds) != sorted(SPLITS):
        raise NerDataError(f"{where} has the splits {sorted(ds)}, not {sorted(SPLITS)}")
    for split, d in ds.items():
        tags = d.features.get("ner_tags")
        names = getattr(getattr(tags, "feature", None), "names", None)
        if "tokens" not in d.features or names != list(TAGS):
            raise NerDataError(f"{where}, split {split}: expected columns tokens and ner_tags with the tags "
                               f"{', '.join(TAGS)}; it has {d.features}")
    return ds


def _hub_failure(lang: str, e: Exception) -> str:
    from datasets import config

    where = f"the Hugging Face Hub ({config.HF_ENDPOINT}) {HUB_DATASET} PAN-X.{lang}"
    first_line = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, ConnectionError):  # what `datasets` raises when no answer came (and OfflineModeIsEnabled)
        return f"{where}: could not be reached, and it is not in the local cache ({first_line})"
    return f"{where} ({type(e).__name__}: {first_line})"


def check_lang(lang: str) -> None:
    if lang not in PANX_LANGS:
        raise NerDataError(f"unknown PAN-X language {lang!r}; known: {' '.join(sorted(PANX_LANGS))}")


def load_panx(lang: str, data_dir: str | os.PathLike | None = None) -> DatasetDict:
    """One language's PAN-X: train / validation / test with columns tokens, ner_tags, langs."""
    check_lang(lang)
    tried = []
    for source, folder in (("data_dir", data_dir), (ENV_VAR, os.environ.get(ENV_VAR))):
        if not folder:
            continue
        folder = Path(folder)
        if not folder.is_dir():
            tried.append(f"{source}={folder} (not a folder)")
            continue
        try:
            return _load_folder(folder, lang)
        except FileNotFoundError as e:
            tried.append(f"{source}: {e}")
    try:
        return _load_hub(lang)
    except NerDataError:
        raise
    except Exception as e:  # no network, no such repo or config, datasets errors: reported together below
        tried.append(_hub_failure(lang, e))
    raise FileNotFoundError(
        f"could not load PAN-X {lang!r}. Tried:\n  - " + "\n  - ".join(tried)
        + f"\nPass --data-dir (a folder of {{train,dev,test}}-{lang}.tsv) or set {ENV_VAR}."
    )


def swiss_indices(num_rows: int, fraction: float, seed: int = 0) -> np.ndarray:
    """The rows `ds.shuffle(seed=seed).select(range(int(fraction * num_rows)))` keeps: `datasets`
    shuffles with numpy's default_rng(seed).permutation, and the first rows of it are kept."""
    return np.random.default_rng(seed).permutation(num_rows)[: int(fraction * num_rows)]


def swiss_corpus(data_dir=None, langs=SWISS_LANGS, seed: int = 0) -> dict[str, DatasetDict]:
    """The book's Swiss mix: each language keeps its share (de 62.9%, fr 22.9%, it 8.4%, en 5.9%)
    of every split."""
    unknown = [lang for lang in langs if lang not in SWISS_FRACTIONS]
    if unknown:
        raise NerDataError(f"no Swiss-mix fraction for {unknown}; the mix has {list(SWISS_FRACTIONS)}")
    corpus = {}
    for lang in langs:
        ds = load_panx(lang, data_dir)
        frac = SWISS_FRACTIONS[lang]
        corpus[lang] = DatasetDict({
            split: d.select(swiss_indices(d.num_rows, frac, seed)) for split, d in ds.items()
        })
    return corpus


def panx_splits(lang: str, data_dir=None, full_splits: bool = False) -> DatasetDict:
    """A language's train/validation/test: its Swiss-mix subsets, or the whole PAN-X splits when
    asked or when the language is not in the mix."""
    if full_splits or lang not in SWISS_FRACTIONS:
        return load_panx(lang, data_dir)
    return swiss_corpus(data_dir, [lang])[lang]


def entity_counts(ds: DatasetDict) -> dict[str, dict[str, int]]:
    """Entities per split, counted by their B- tags."""
    names = ds["train"].features["ner_tags"].feature.names
    counts = {}
    for split, d in ds.items():
        tags = np.concatenate([np.asarray(t, dtype=np.int64) for t in d["ner_tags"]])
        row = {name[2:]: int((tags == i).sum()) for i, name in enumerate(names) if name.startswith("B-")}
        counts[split] = {"sentences": d.num_rows, **row}
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loaders.panx", description="Entity counts of PAN-X splits.")
    p.add_argument("--langs", nargs="+", default=list(SWISS_LANGS))
    p.add_argument("--data-dir", default=None, help=f"folder of PAN-X files (default: ${ENV_VAR}, else the hub)")
    p.add_argument("--swiss", action="store_true", help="count the Swiss-mix subsets instead of the full splits")
    args = p.parse_args(argv)
    try:
        data = swiss_corpus(args.data_dir, args.langs) if args.swiss else {
            lang: load_panx(lang, args.data_dir) for lang in args.langs}
    except (NerDataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{'lang':<5} {'split':<11} {'sentences':>9} {'PER':>7} {'ORG':>7} {'LOC':>7}")
    for lang, ds in data.items():
        for split, row in entity_counts(ds).items():
            print(f"{lang:<5} {split:<11} {row['sentences']:>9} {row['PER']:>7} {row['ORG']:>7} {row['LOC']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
