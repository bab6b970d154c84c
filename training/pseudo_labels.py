"""The teacher's tags on unlabeled sentences, and how sure it is of them (training/adaptation.py).

The teacher tags as `eval.py` does: the sentences are encoded with its tokenizer and alignment
(each word read at its head, xlmr/alignment.py), scored without gradients and decoded by its
head's decoding, Viterbi with its tag-transition prior by default (evaluation/predict.py). The
tags are hard targets: the word tags the teacher would print.

A sentence's confidence is its least sure word: the lowest probability the teacher gives the tag
it chose for a word (at the word's head). Where a glued piece continues an entity, decoding
scored P(B-X) + P(I-X) (xlmr/decoding.py), so that sum is the word's probability there too.

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
from xlmr import alignment
from xlmr.atomic import write_text_atomic
from xlmr.decoding import inside_ids
from xlmr.weights import checkpoint_config, load_model

from .config import RunError

FILE = "pseudo-labels.jsonl"


def checkpoint_labels(folder) -> list[str]:
    """A checkpoint's label list, in its id order (config.json's id2label)."""
    id2label = checkpoint_config(Path(folder)).get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


def sentence_confidence(scores: torch.Tensor, tags: list[int], glued: list[bool], inside: list[int],
                        either: bool) -> float:
    """The lowest probability among a sentence's words of the tag chosen for it. scores: (n, C)
    log-probabilities at the n heads; tags: the decoded tag per head; `either`: a glued I-X word
    counts P(B-X) + P(I-X), as decoding did (a model not trained on glued pieces)."""
    if not tags:
        return 0.0
    chosen = torch.tensor(tags)
    log_p = scores.gather(1, chosen[:, None]).squeeze(1)  # (n,)
    if either:
        begin_of = {i: b for b, i in enumerate(inside) if i != b}  # I-X id -> B-X id
        for k, (tag, g) in enumerate(zip(tags, glued)):
            if g and tag in begin_of:
                log_p[k] = torch.logaddexp(scores[k, tag], scores[k, begin_of[tag]])
    return float(log_p.min().exp())


def tag_sentences(teacher: Path, sentences: list[list[str]], tokenizer, cfg) -> tuple[list[list[str]], list[float], dict]:
    """(word tags, confidence) per sentence, and how they were made (device, precision, seconds)."""
    t0 = time.perf_counter()
    labels = checkpoint_labels(teacher)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, amp_dtype, why = ready_for_inference(load_model(teacher), device, cfg.amp)
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=labels))})
    blank = Dataset.from_dict({"tokens": sentences, "ner_tags": [[0] * len(s) for s in sentences]}, features=features)
    encoded = encode_ner(DatasetDict({"unlabeled": blank}), tokenizer, cfg.max_length, cfg.unspaced)["unlabeled"]
    outputs = predict(model, encoded, cfg.eval_batch_size, device, amp_dtype, progress=not cfg.no_progress,
                      desc="teacher tags", decode=cfg.decode, keep_scores=True)
    inside = inside_ids(labels)
    either = not model.config.glued_pieces_labelled
    word_ids, word_heads = encoded["word_ids"], encoded["word_heads"]
    tags, confidence = [], []
    for o, ids, heads in zip(outputs, word_ids, word_heads):
        head_tags = [int(o["pred"][h]) for h in alignment.head_positions(ids, heads)]  # the decoded tags
        confidence.append(sentence_confidence(o["scores"], head_tags, o["glued"], inside, either))
        tags.append([labels[t] for t in o["words"]])
    return tags, confidence, {"device": str(device), "precision": why, "seconds": time.perf_counter() - t0}


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
