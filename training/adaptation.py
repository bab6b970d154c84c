"""Adapting a tagger to the user's own unlabeled text: the teacher's tags on it train a student.

    python train_loop.py --teacher runs/en --unlabeled-file texts-sw.txt texts-ta.txt --output-dir runs/en-adapted

`AdaptationData` is a data source with loaders/data.py's interface (check, labels, training,
evaluation), which training/prepare.py picks when --teacher is given; everything after it is the
training run's own: the loop, its resumable state, validation each epoch, the tag-transition
prior, the final test and results.json. In order:

1. each unlabeled file is read (loaders/unlabeled.py) and a seeded sample of at most
   `adapt_sentences` of its sentences drawn, so a large file cannot drown the others;
2. the teacher tags them (training/pseudo_labels.py): its labels, its alignment, its decoding;
   the tags are saved in the run folder, and --resume reuses them;
3. the training set: every tagged sentence, and `adapt_mix_source` sentences of the teacher's
   own labelled training data (seeded), which keep the source language where the teacher had it;
4. validation, which picks the best epoch and the prior's weight, is the teacher's source
   validation set alone: no target-language text is ever used to choose anything.

The source is what the teacher's results.json recorded (its PAN-X languages and folder, or its
--train-file and --validation-file); a data flag given to this run replaces the recorded value
(`--data-dir` when the teacher was trained on another machine). The student's labels are the
teacher's, in the teacher's order, whatever label set that is.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value, concatenate_datasets

from evaluation.reports import write_json_atomic
from loaders.conll import NerDataError
from loaders.data import ner_data
from loaders.nerfiles import relabel
from loaders.unlabeled import UnlabeledText, read_unlabeled
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import checkpoint_config, is_ours, tokenizer_file_in

from . import pseudo_labels
from .config import RunError, TrainConfig, default_of

SOURCE_FLAGS = ("langs", "data_dir", "full_splits", "train_file", "validation_file")
SUMMARY = "adaptation.json"
TARGETS = "hard: the teacher's word tags, as its decoding chose them (Viterbi with its tag-transition prior)"


def recorded_source(cfg: TrainConfig) -> dict:
    """The teacher's source data flags: those its results.json recorded, each replaced by this
    run's flag where the run sets it off its default."""
    results = Path(cfg.teacher) / "results.json"
    try:
        recorded = json.loads(results.read_text())["config"] if results.is_file() else {}
    except (ValueError, KeyError) as e:
        raise RunError(f"{results}: not a run's results.json ({e}); cannot tell the teacher's source data") from None
    defaults = {f.name: default_of(f) for f in fields(TrainConfig)}
    return {name: recorded[name] if name in recorded and getattr(cfg, name) == defaults[name] else getattr(cfg, name)
            for name in SOURCE_FLAGS}


def run_folder(cfg: TrainConfig) -> Path:
    return Path(cfg.output_dir or cfg.resume)


@dataclass
class AdaptationData:
    cfg: TrainConfig
    source: object = None  # the teacher's own data (loaders/data.py), for validation, test and mixing in
    texts: list[UnlabeledText] = field(default_factory=list)
    tokenizer: XLMRTokenizer | None = None  # the teacher's

    def __post_init__(self):
        self.flags = recorded_source(self.cfg)
        for name, value in self.flags.items():  # so the run's config (results.json) names the data it used
            setattr(self.cfg, name, value)
        self.source = ner_data(self.flags["langs"], self.cfg.eval_langs, self.flags["data_dir"],
                               self.flags["full_splits"], self.flags["train_file"], self.flags["validation_file"],
                               self.cfg.test_file)

    @property
    def normalised(self) -> int:
        return self.source.normalised

    def check(self, training: bool = False) -> None:
        cfg = self.cfg
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RunError("--teacher runs on one process: the teacher's tagging is not shared out over torchrun")
        if not is_ours(checkpoint_config(Path(cfg.teacher))):
            raise RunError(f"--teacher {cfg.teacher}: not a checkpoint of ours (train one with train_loop.py, or "
                           f"convert one with python -m xlmr.convert)")
        if not cfg.unlabeled_file:
            raise RunError("--teacher needs --unlabeled-file: the text to adapt to, a file per language")
        if not (cfg.output_dir or cfg.resume):
            raise RunError("--teacher needs --output-dir (the student's folder; never the teacher's)")
        if run_folder(cfg).resolve() == Path(cfg.teacher).resolve():
            raise RunError(f"--output-dir {run_folder(cfg)} is the teacher's folder; the student needs its own")
        names = [Path(f).stem for f in cfg.unlabeled_file]
        if len(set(names)) < len(names):
            raise RunError(f"--unlabeled-file: two files share a name ({', '.join(names)}); a file's name is its "
                           f"language in the report")
        spm = tokenizer_file_in(cfg.teacher)
        if spm is None:
            raise RunError(f"--teacher {cfg.teacher}: no sentencepiece.bpe.model beside the weights")
        self.tokenizer = XLMRTokenizer(spm)
        self.texts = [read_unlabeled(f, self.tokenizer.piece_spans) for f in cfg.unlabeled_file]
        try:
            self.source.check(training=True)
        except (NerDataError, FileNotFoundError) as e:
            raise RunError(f"the teacher's source data ({_said(self.flags)}): {e}") from None

    def labels(self) -> list[str]:
        return pseudo_labels.checkpoint_labels(self.cfg.teacher)

    def training(self) -> DatasetDict:
        labels = self.labels()
        if not self.texts:
            self.check(training=True)
        records, how = self._pseudo_labels()
        source = self.source.training()
        validation = relabel(source["validation"], labels, f"the teacher's validation data ({_said(self.flags)})")
        features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=labels))})
        train = Dataset.from_dict({"tokens": [r["tokens"] for r in records],
                                   "ner_tags": [[labels.index(t) for t in r["tags"]] for r in records]}, features=features)
        mixed = self._source_sample(source["train"], labels, features)
        if mixed is not None:
            train = concatenate_datasets([train, mixed])
        n_mixed = 0 if mixed is None else len(mixed)
        self._write_summary(records, n_mixed, how)
        print(f"adapting to {len(records)} teacher-tagged sentences + {n_mixed} source sentences")
        return DatasetDict({"train": train, "validation": validation})

    def evaluation(self, labels: list[str], split: str = "test") -> dict:
        return self.source.evaluation(labels, split)

    def _pseudo_labels(self) -> tuple[list[dict], dict]:
        """(one record per sampled sentence, how they were made): saved in the run
        folder, reused when the same teacher, files and settings made them; --resume insists."""
        cfg, path = self.cfg, run_folder(self.cfg) / pseudo_labels.FILE
        made_with = self._made_with()
        if path.is_file():
            saved, how, records = pseudo_labels.load(path)
            if saved == made_with:
                print(f"reusing the teacher's tags in {path} ({len(records)} sentences)")
                return records, {**how, "reused": True}
            if cfg.resume:
                differ = sorted(k for k in made_with if saved.get(k) != made_with.get(k))
                raise RunError(f"--resume: {path} was made with other {', '.join(differ)}; resume with the "
                               f"arguments of the run that made it")
        elif cfg.resume:
            raise RunError(f"--resume: {path} is missing; the run's targets cannot be rebuilt exactly")
        sample = [(text, k) for text in self.texts for k in self._sampled(text)]
        print(f"teacher {cfg.teacher}: tagging {len(sample)} sentences of {len(self.texts)} file(s)")
        tags, how = pseudo_labels.tag_sentences(Path(cfg.teacher), [t.tokens[k] for t, k in sample],
                                                self.tokenizer, cfg)
        records = [{"lang": text.name, "line": text.lines[k], "tokens": text.tokens[k], "tags": tg}
                   for (text, k), tg in zip(sample, tags)]
        pseudo_labels.save(path, made_with, how, records)
        return records, {**how, "reused": False}

    def _sampled(self, text: UnlabeledText) -> list[int]:
        """At most adapt_sentences of a file's sentences (0: all), drawn with the run's seed, in file order."""
        n, cap = len(text.tokens), self.cfg.adapt_sentences
        if not cap or cap >= n:
            return list(range(n))
        return sorted(np.random.default_rng(self.cfg.seed).permutation(n)[:cap].tolist())

    def _source_sample(self, train: Dataset, labels: list[str], features: Features) -> Dataset | None:
        """adapt_mix_source sentences of the teacher's labelled training data (seeded), or None."""
        n = min(self.cfg.adapt_mix_source, len(train))
        if n <= 0:
            return None
        keep = np.sort(np.random.default_rng(self.cfg.seed).permutation(len(train))[:n])
        sample = relabel(train.select(keep), labels, f"the teacher's training data ({_said(self.flags)})")
        return sample.select_columns(["tokens", "ner_tags"]).cast(features)

    def _made_with(self) -> dict:
        """Everything the teacher's tags depend on: the teacher (its files' sizes and times), the
        unlabeled files (their SHA-256), the sampling, the encoding and the decoding."""
        cfg, teacher = self.cfg, Path(self.cfg.teacher)
        stamp = {name: [(teacher / name).stat().st_size, (teacher / name).stat().st_mtime_ns]
                 for name in ("config.json", "model.safetensors")}
        files = {t.name: {"path": str(t.path), "sha256": hashlib.sha256(t.path.read_bytes()).hexdigest()}
                 for t in self.texts}
        return {"teacher": str(teacher.resolve()), "teacher_files": stamp, "files": files,
                "adapt_sentences": cfg.adapt_sentences, "seed": cfg.seed, "max_length": cfg.max_length,
                "unspaced": cfg.unspaced, "decode": cfg.decode, "amp": cfg.amp}

    def _write_summary(self, records: list[dict], mixed: int, how: dict) -> None:
        per_file = {}
        for text in self.texts:
            tagged = [r for r in records if r["lang"] == text.name]
            per_file[text.name] = {"path": str(text.path), "sentences": len(text.tokens), "skipped_lines": text.skipped,
                                   "tagged": len(tagged)}
        write_json_atomic(run_folder(self.cfg) / SUMMARY, {
            "teacher": self.cfg.teacher, "student_start": self.cfg.model, "targets": TARGETS,
            "sentences_per_language_cap": self.cfg.adapt_sentences,
            "languages": per_file, "tagged_sentences": len(records),
            "source": {**self.flags, "mixed_sentences": mixed}, "tagging": how})


def _said(flags: dict) -> str:
    if flags["train_file"]:
        return f"--train-file {flags['train_file']} --validation-file {flags['validation_file']}"
    return f"PAN-X {' '.join(flags['langs'])} from {flags['data_dir'] or 'the hub'}"


def summary(run_dir: Path) -> dict | None:
    """What an adaptation run did (written when its training set was built), for results.json."""
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None
