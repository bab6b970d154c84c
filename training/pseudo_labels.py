"""The teacher's tags on unlabeled sentences (training/adaptation.py).

The teacher tags as `eval.py` does: the sentences are encoded with its tokenizer and alignment
(each word read at its head, xlmr/alignment.py), scored without gradients and decoded by its
head's decoding, Viterbi with its tag-transition prior by default (evaluation/predict.py). The
tags are hard targets: the word tags the teacher would print.

The tags are saved in the run folder (`pseudo-labels.jsonl`: a first line saying what made them,
then a sentence a line) so `--resume` trains on the very same targets without tagging again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from evaluation.predict import predict
from loaders.align import encode_ner
from runtime.inference import ready_for_inference
from xlmr.atomic import write_text_atomic
from xlmr.weights import checkpoint_config, load_model

from .config import RunError

FILE = "pseudo-labels.jsonl"


def checkpoint_labels(folder) -> list[str]:
    """A checkpoint's label list, in its id order (config.json's id2label)."""
    id2label = checkpoint_config(Path(folder)).get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


def tag_sentences(teacher: Path, sentences: list[list[str]], tokenizer, cfg) -> tuple[list[list[str]], dict]:
    """The word tags of each sentence, and how they were made (device, precision, seconds)."""
    t0 = time.perf_counter()
    labels = checkpoint_labels(teacher)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, amp_dtype, why = ready_for_inference(load_model(teacher), device, cfg.amp)
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=labels))})
    blank = Dataset.from_dict({"tokens": sentences, "ner_tags": [[0] * len(s) for s in sentences]}, features=features)
    encoded = encode_ner(DatasetDict({"unlabeled": blank}), tokenizer, cfg.max_length, cfg.unspaced)["unlabeled"]
    outputs = predict(model, encoded, cfg.eval_batch_size, device, amp_dtype, progress=not cfg.no_progress,
                      desc="teacher tags", decode=cfg.decode)
    tags = [[labels[t] for t in o["words"]] for o in outputs]
    return tags, {"device": str(device), "precision": why, "seconds": time.perf_counter() - t0}


def save(path: Path, made_with: dict, how: dict, records: list[dict]) -> None:
    """The first line says what made the tags (and how: device, precision, seconds); then one
    sentence a line."""
    lines = [json.dumps({"made_with": made_with, "how": how}, ensure_ascii=False)]
    lines += [json.dumps(r, ensure_ascii=False) for r in records]
    write_text_atomic(path, "\n".join(lines) + "\n")


def load(path: Path) -> tuple[dict, dict, list[dict]]:
    """(what made the tags, how, the sentences) of a saved file."""
    try:
        first, *rest = Path(path).read_text(encoding="utf-8").splitlines()
        header = json.loads(first)
        return header["made_with"], header["how"], [json.loads(line) for line in rest]
    except (ValueError, KeyError) as e:  # a file another program wrote, or edited by hand
        raise RunError(f"{path}: not a pseudo-label file this program wrote ({e}); remove it to tag again") from None
