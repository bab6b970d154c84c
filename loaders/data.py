"""Where sentences come from: PAN-X (a folder or the Hub) or your own files, behind one interface.

Training, `eval.py` and the sweep ask a source for its label list, its training splits and the
sets to evaluate on, and never branch on which source it is (litgpt's DataModule: the data owns
its format and its labels). `ner_data` is the one place that chooses.

    source = ner_data(langs=["de"], data_dir="../shared/data/panx")          # PAN-X, the Swiss mix
    source = ner_data(train_file="train.conll", validation_file="dev.conll", test_files=["test.conll"])
    source.check(training=True)     # cheap checks, before anything slow
    source.labels()                 # PAN-X's seven tags, or the training file's label list
    source.training()               # DatasetDict train / validation: tokens, ner_tags (+ langs)
    source.evaluation(labels)       # name -> a function loading that set, in the ids of `labels`

To add a source (another corpus, a database): a class with these four methods, and a branch in
`ner_data`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from datasets import Dataset, DatasetDict, concatenate_datasets

from .conll import NerDataError
from .nerfiles import labels_of, load_ner_file, read_ner_file, relabel, to_dataset
from .panx import TAGS, check_lang, panx_splits

Loader = Callable[[], Dataset]


@dataclass
class PanxData:
    """PAN-X languages: the Swiss-mix subsets of `langs` (or their full splits) to train on, and
    the `eval_langs` test sets."""
    langs: list[str] = field(default_factory=list)
    eval_langs: list[str] = field(default_factory=list)
    data_dir: str | None = None
    full_splits: bool = False
    normalised: int = 0  # PAN-X's tags are kept as written
    _read: dict = field(default_factory=dict, repr=False, compare=False)

    def check(self, training: bool = False) -> None:
        for lang in [*self.langs, *self.eval_langs]:
            check_lang(lang)

    def labels(self) -> list[str]:
        return list(TAGS)

    def training(self) -> DatasetDict:
        return DatasetDict({split: concatenate_datasets([self._splits(lang)[split] for lang in self.langs])
                            for split in ("train", "validation")})

    def evaluation(self, labels: list[str], split: str = "test") -> dict[str, Loader]:
        return {lang: (lambda lang=lang: relabel(self._splits(lang)[split], labels, f"PAN-X {lang}"))
                for lang in self.eval_langs}

    def _splits(self, lang: str) -> DatasetDict:
        if lang not in self._read:  # a language both trained and tested on is read once
            self._read[lang] = panx_splits(lang, self.data_dir, self.full_splits)
        return self._read[lang]


@dataclass
class FileData:
    """Your own files: CoNLL, JSON lines or Parquet (loaders/nerfiles.py). The training file gives
    the label list; validation and test files are read against it."""
    train_file: str | None = None
    validation_file: str | None = None
    test_files: list[str] = field(default_factory=list)
    normalised: int = 0  # tags of the training file rewritten to IOB2, once read
    _read: object = field(default=None, repr=False, compare=False)

    def check(self, training: bool = False) -> None:
        if (training or self.train_file or self.validation_file) and not (self.train_file and self.validation_file):
            raise NerDataError("--train-file and --validation-file go together (the best epoch is picked on validation)")
        for path in (self.train_file, self.validation_file, *self.test_files):
            if path and not Path(path).is_file():
                raise FileNotFoundError(f"no data file at {path}")

    def labels(self) -> list[str]:
        return labels_of(self._train())

    def training(self) -> DatasetDict:
        train = self._train()
        self.normalised = train.normalised
        labels = labels_of(train)
        return DatasetDict({"train": to_dataset(train, labels), "validation": load_ner_file(self.validation_file, labels)})

    def evaluation(self, labels: list[str], split: str = "test") -> dict[str, Loader]:
        return {Path(f).name: (lambda f=f: load_ner_file(f, labels)) for f in self.test_files}

    def _train(self):
        if self._read is None:
            self._read = read_ner_file(self.train_file)
        return self._read


def ner_data(langs=(), eval_langs=None, data_dir=None, full_splits: bool = False, train_file=None,
             validation_file=None, test_files=()) -> PanxData | FileData:
    """Your files when any is named, else PAN-X."""
    test_files = [f for f in ([test_files] if isinstance(test_files, str) else test_files or []) if f]
    if train_file or validation_file or test_files:
        return FileData(train_file, validation_file, test_files)
    return PanxData(list(langs), list(langs if eval_langs is None else eval_langs), data_dir, full_splits)
